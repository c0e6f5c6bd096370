package search

import (
	"errors"
	"math"
	"time"
)

var (
	errDateFormat = errors.New("not a FHIR date, dateTime or instant")
	errDateZone   = errors.New("a time without a timezone")
)

// Open period ends (datatypes.html#Period: a missing start or end is
// unknown, so the period extends without limit that way).
const (
	openLo int64 = math.MinInt64
	openHi int64 = math.MaxInt64
)

// dateRange returns the instants a FHIR date, dateTime or instant covers at
// its precision, as Unix milliseconds [lo, hi] inclusive (search.html#date:
// "the value is a range ... the precision of the value"): YYYY covers the
// year, YYYY-MM the month, YYYY-MM-DD the day, hh:mm the minute, hh:mm:ss the
// second and fractional seconds their digits (at most one millisecond).
// Values without a time are taken in UTC. A time without a timezone is an
// error (datatypes.html#dateTime: "If hours and minutes are specified, a time
// zone SHALL be populated").
func dateRange(s string) (lo, hi int64, err error) {
	n := len(s)
	if n < 4 {
		return 0, 0, errDateFormat
	}
	year, ok := digits(s, 0, 4)
	if !ok || year < 1 {
		return 0, 0, errDateFormat
	}
	month, day := 1, 1
	switch {
	case n == 4:
		t := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return t.UnixMilli(), t.AddDate(1, 0, 0).UnixMilli() - 1, nil
	case n >= 7 && s[4] == '-':
		if month, ok = digits(s, 5, 2); !ok || month < 1 || month > 12 {
			return 0, 0, errDateFormat
		}
		if n == 7 {
			t := time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
			return t.UnixMilli(), t.AddDate(0, 1, 0).UnixMilli() - 1, nil
		}
	default:
		return 0, 0, errDateFormat
	}
	if n < 10 || s[7] != '-' {
		return 0, 0, errDateFormat
	}
	if day, ok = digits(s, 8, 2); !ok || day < 1 || day > daysIn(year, month) {
		return 0, 0, errDateFormat
	}
	if n == 10 {
		t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		return t.UnixMilli(), t.AddDate(0, 0, 1).UnixMilli() - 1, nil
	}
	if s[10] != 'T' || n < 16 || s[13] != ':' {
		return 0, 0, errDateFormat
	}
	hour, ok1 := digits(s, 11, 2)
	minute, ok2 := digits(s, 14, 2)
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return 0, 0, errDateFormat
	}
	i := 16
	sec, nanos := 0, 0
	width := int64(60000) // minute precision
	if i < n && s[i] == ':' {
		if sec, ok = digits(s, i+1, 2); !ok || sec > 59 {
			return 0, 0, errDateFormat
		}
		i += 3
		width = 1000
		if i < n && s[i] == '.' {
			j := i + 1
			for j < n && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			frac := j - i - 1
			if frac == 0 || frac > 9 {
				return 0, 0, errDateFormat
			}
			f, _ := digits(s, i+1, frac)
			for k := frac; k < 9; k++ {
				f *= 10
			}
			nanos = f
			width = 1
			for k := frac; k < 3; k++ {
				width *= 10
			}
			i = j
		}
	}
	if i == n {
		return 0, 0, errDateZone
	}
	offset := 0
	switch s[i] {
	case 'Z':
		if i+1 != n {
			return 0, 0, errDateFormat
		}
	case '+', '-':
		if n != i+6 || s[i+3] != ':' {
			return 0, 0, errDateFormat
		}
		oh, ok1 := digits(s, i+1, 2)
		om, ok2 := digits(s, i+4, 2)
		if !ok1 || !ok2 || oh > 14 || om > 59 {
			return 0, 0, errDateFormat
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return 0, 0, errDateFormat
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC)
	lo = t.UnixMilli() - int64(offset)*1000
	return lo, lo + width - 1, nil
}

// digits parses s[i:i+w] as a non-negative decimal number.
func digits(s string, i, w int) (int, bool) {
	if i+w > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+w]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
