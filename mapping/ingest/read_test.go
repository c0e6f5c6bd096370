package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestReadNDJSON(t *testing.T) {
	lim := Limits{MaxRecordBytes: 16, MaxRecords: 3}
	for _, tc := range []struct {
		name    string
		in      string
		lines   []int
		refused []int
		limit   string // LimitError path
	}{
		{"lines", "{\"a\":1}\n{\"b\":2}\n", []int{1, 2}, nil, ""},
		{"crlf and blanks", "{\"a\":1}\r\n\r\n  \n{\"b\":2}", []int{1, 4}, nil, ""},
		{"a broken line is kept for the record rule", "{}\n{}\n{\"a\":", []int{1, 2, 3}, nil, ""},
		{"a line over the record limit", "{}\n{\"a\":\"" + strings.Repeat("x", 100) + "\"}\n{}", []int{1, 2, 3}, []int{1}, ""},
		// Found by FuzzReadBatch: a blank line longer than the record limit
		// was refused as a record instead of skipped.
		{"a blank line over the record limit", "{}\n" + strings.Repeat(" ", 40) + "\n{}", []int{1, 3}, nil, ""},
		{"exactly the record limit", "{\"a\":\"" + strings.Repeat("x", 8) + "\"}\r\n", []int{1}, nil, ""},
		{"too many records", "{}\n\n{}\n{}\n{}\n", nil, nil, "line 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadNDJSON(strings.NewReader(tc.in), lim)
			var le *LimitError
			if tc.limit != "" {
				if !errors.As(err, &le) || le.Path != tc.limit {
					t.Fatalf("err %v, want a limit at %s", err, tc.limit)
				}
				return
			}
			if err != nil || b.Len() != len(tc.lines) {
				t.Fatalf("got %v, err %v", b, err)
			}
			for i, l := range tc.lines {
				if b.Lines[i] != l {
					t.Errorf("record %d on line %d, want %d", i, b.Lines[i], l)
				}
			}
			if len(b.Refused) != len(tc.refused) {
				t.Errorf("refused %v, want %v", b.Refused, tc.refused)
			}
			for _, i := range tc.refused {
				if b.Records[i] != nil || len(b.Refused[i]) != 1 {
					t.Errorf("record %d not refused: %v", i, b.Refused)
				}
			}
		})
	}
}

func TestReadJSONArray(t *testing.T) {
	lim := Limits{MaxRecordBytes: 16, MaxRecords: 3, MaxBytes: 200}
	for _, tc := range []struct {
		name, in string
		n        int
		refused  int // index, -1 for none
		err      string
	}{
		{"records", ` [ {"a":1} , {"b":"],}{\"x"} ]  `, 2, -1, ""},
		{"empty", `[]`, 0, -1, ""},
		{"broken element kept for the record rule", `[{"a":}, {}]`, 2, -1, ""},
		{"element over the record limit", `[{}, {"a":"` + strings.Repeat("x", 50) + `"}, {}]`, 3, 1, ""},
		// Found by FuzzReadBatch: the closing brace took a record one byte
		// over the limit.
		{"closing brace over the record limit", `[{"a":"` + strings.Repeat("x", 9) + `"}]`, 1, 0, ""},
		{"exactly the record limit", `[{"a":"` + strings.Repeat("x", 8) + `"}]`, 1, -1, ""},
		{"not an array", `{"a":1}`, 0, -1, "JSON array"},
		{"missing comma", `[{} {}]`, 0, -1, "expected ',' or ']'"},
		{"empty element", `[{},,{}]`, 0, -1, "expected a record"},
		{"unbalanced", "[{}\n,{}}]", 0, -1, "line 2, column 4"},
		{"ends early", `[{}, {"a":`, 0, -1, "ends early"},
		{"after the array", `[{}] x`, 0, -1, "after the array"},
		{"too many records", `[{},{},{},{}]`, 0, -1, "[3]: the batch holds more than"},
		{"too many bytes", `[` + strings.Repeat(" ", 300) + `]`, 0, -1, "larger than the limit of 200 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadJSONArray(strings.NewReader(tc.in), lim)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || b.Len() != tc.n || b.Lines != nil {
				t.Fatalf("got %+v, err %v", b, err)
			}
			if tc.refused >= 0 && (b.Records[tc.refused] != nil || len(b.Refused) != 1) {
				t.Errorf("refused: %v", b.Refused)
			}
			if tc.refused < 0 && len(b.Refused) != 0 {
				t.Errorf("refused: %v", b.Refused)
			}
			// Each record is its element's bytes, exactly.
			var want []json.RawMessage
			if json.Unmarshal([]byte(tc.in), &want) == nil {
				for i, r := range b.Records {
					if r != nil && !bytes.Equal(r, want[i]) {
						t.Errorf("record %d = %s, want %s", i, r, want[i])
					}
				}
			}
		})
	}
}
