package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzReadBatch: the batch readers of both doors never panic; they either
// refuse the batch as a whole (a limit, broken framing) or return records
// none of which is over the record limit, refused records nil with their
// errors, and for NDJSON one record per non-blank line, each on its line, in
// order (docs/design/security.md IN-3, IN-4). Seeds: synthetic batches
// (testdata/fuzz/FuzzReadBatch).
func FuzzReadBatch(f *testing.F) {
	f.Add([]byte("{\"kind\":\"patient\"}\n\n{broken\r\n  \n[1,2]"))
	f.Add([]byte(`[{"a":"],}{"}, {"b":[1,{"c":2}]} ,"x"]`))
	lim := Limits{MaxBytes: 1 << 16, MaxRecordBytes: 64, MaxRecords: 50}
	f.Fuzz(func(t *testing.T, data []byte) {
		nd, err := ReadNDJSON(bytes.NewReader(data), lim)
		var le *LimitError
		switch {
		case errors.As(err, &le):
		case err != nil:
			t.Fatalf("NDJSON: %v", err)
		default:
			check(t, nd, lim)
			var want []int
			for i, l := range bytes.Split(data, []byte("\n")) {
				if len(bytes.TrimSpace(l)) > 0 {
					want = append(want, i+1)
				}
			}
			if len(want) != nd.Len() {
				t.Fatalf("%d records for %d non-blank lines", nd.Len(), len(want))
			}
			for i, l := range want {
				if nd.Lines[i] != l {
					t.Fatalf("record %d on line %d, want %d", i, nd.Lines[i], l)
				}
			}
		}
		arr, err := ReadJSONArray(bytes.NewReader(data), lim)
		var se *SyntaxError
		switch {
		case errors.As(err, &le), errors.As(err, &se):
		case err != nil:
			t.Fatalf("array: %v", err)
		default:
			check(t, arr, lim)
			// A valid array splits into exactly its elements.
			var want []json.RawMessage
			if json.Unmarshal(data, &want) == nil {
				if len(want) != arr.Len() {
					t.Fatalf("%d records for %d elements", arr.Len(), len(want))
				}
				for i, r := range arr.Records {
					if r != nil && !bytes.Equal(r, want[i]) {
						t.Fatalf("record %d = %q, want %q", i, r, want[i])
					}
				}
			}
		}
	})
}

func check(t *testing.T, b *Batch, lim Limits) {
	t.Helper()
	if b.Len() > lim.MaxRecords {
		t.Fatalf("%d records over the limit of %d", b.Len(), lim.MaxRecords)
	}
	for i, r := range b.Records {
		if _, refused := b.Refused[i]; refused != (r == nil) {
			t.Fatalf("record %d: nil %v, refused %v", i, r == nil, refused)
		}
		if len(r) > lim.MaxRecordBytes {
			t.Fatalf("record %d holds %d bytes, over the limit", i, len(r))
		}
		if r != nil && len(bytes.TrimSpace(r)) == 0 {
			t.Fatalf("record %d is empty", i)
		}
	}
}
