package clinic

import (
	"testing"
)

// FuzzDecode: Decode, Validate and Canonical never panic, Decode returns a
// record or errors (not both), and a valid record's canonical form decodes
// again to a record with the same hash.
func FuzzDecode(f *testing.F) {
	for _, b := range readNDJSON(&testing.T{}, "testdata/valid.ndjson") {
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"patient","id":"p","name":{"family":"\u0041\/"},"x":[{"a":[1,{"b":null}]}]}`))
	f.Add([]byte(`{"kind":"session","vitals":[{"systolic":1e400}],"sessionNumber":-0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, errs := Decode(data)
		if (r == nil) == (len(errs) == 0) {
			t.Fatalf("Decode returned record %v with errors %v", r, errs)
		}
		if r == nil || len(Validate(r)) > 0 {
			return
		}
		c, err := Canonical(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, errs := Decode(c)
		if len(errs) > 0 {
			t.Fatalf("canonical form rejected: %v", errs)
		}
		if Hash(r) != Hash(r2) {
			t.Fatal("hash changed on round trip")
		}
	})
}
