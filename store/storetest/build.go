package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// Body returns a canonical resource body as the emit path writes it: id
// first, then resourceType, then rest (a JSON member list starting with a
// comma, or empty).
func Body(typ, id, rest string) []byte {
	return []byte(`{"id":"` + id + `","resourceType":"` + typ + `"` + rest + `}`)
}

// Res returns a ResourceWrite with Body(typ, id, rest).
func Res(typ, id, patient, rest string, index ...store.IndexRow) store.ResourceWrite {
	return store.ResourceWrite{Type: typ, ID: id, Patient: patient, Body: Body(typ, id, rest), Index: index}
}

// Rec returns a RecordWrite whose Source is a small JSON document naming it.
func Rec(kind, clinicID, hash string, resources ...store.ResourceWrite) store.RecordWrite {
	return store.RecordWrite{
		Kind: kind, ClinicID: clinicID, Hash: hash,
		Source:    []byte(`{"kind":"` + kind + `","id":"` + clinicID + `","hash":"` + hash + `"}`),
		Resources: resources,
	}
}

// Token, Str, Date, Ref, Num and Qty build index rows.
func Token(param, system, code string) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindToken, System: system, Code: code}
}

// Str builds a string index row (normalized as the indexer does).
func Str(param, value string) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindString, Value: store.NormalizeString(value)}
}

// Date builds a date index row covering [lo, hi].
func Date(param string, lo, hi time.Time) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindDate, Lo: lo.UnixMilli(), Hi: hi.UnixMilli()}
}

// Ref builds a reference index row to target "Type/id".
func Ref(param, target string) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindReference, Value: target}
}

// Num builds a number index row.
func Num(param string, n float64) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindNumber, Num: n}
}

// Qty builds a quantity index row.
func Qty(param string, n float64, system, code string) store.IndexRow {
	return store.IndexRow{Param: param, Kind: store.KindQuantity, Num: n, System: system, Code: code}
}

// Day is the range of a calendar day in UTC, [00:00, 23:59:59.999].
func Day(s string) (time.Time, time.Time) {
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return d, d.AddDate(0, 0, 1).Add(-time.Millisecond)
}

// Month is the range of a calendar month in UTC.
func Month(s string) (time.Time, time.Time) {
	d, err := time.Parse("2006-01", s)
	if err != nil {
		panic(err)
	}
	return d, d.AddDate(0, 1, 0).Add(-time.Millisecond)
}

// Second is the range of a second, [t, t+999ms].
func Second(s string) (time.Time, time.Time) {
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return d, d.Add(999 * time.Millisecond)
}

// At parses an RFC 3339 instant.
func At(s string) time.Time {
	d, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return d
}

// stamped is the body StampMeta writes for Body(typ, id, rest).
func stamped(t *testing.T, typ, id, rest string, version int64, at time.Time) []byte {
	t.Helper()
	b, err := store.StampMeta(Body(typ, id, rest), version, at)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apply(t *testing.T, s store.Store, recs ...store.RecordWrite) []store.WriteResult {
	t.Helper()
	res, err := s.Apply(context.Background(), recs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != len(recs) {
		t.Fatalf("Apply returned %d results for %d records", len(res), len(recs))
	}
	return res
}

func keyOf(r store.Resource) string { return r.Type + "/" + r.ID }

func ids(rs []store.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func keys(rs []store.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = keyOf(r)
	}
	return out
}

func wantStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if got == nil {
		got = []string{}
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func resultString(r store.WriteResult) string {
	var b strings.Builder
	b.WriteString(string(r.Outcome))
	for _, rr := range r.Resources {
		fmt.Fprintf(&b, " %s/%s@%d:%s", rr.Type, rr.ID, rr.Version, rr.Outcome)
	}
	return b.String()
}

func wantResult(t *testing.T, what string, got store.WriteResult, want string) {
	t.Helper()
	if s := resultString(got); s != want {
		t.Errorf("%s: result = %q, want %q", what, s, want)
	}
}
