package synth

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// BenchmarkDecodeValidate measures clinic.Decode + Validate per generated
// record (the ingest path's per-record cost).
func BenchmarkDecodeValidate(b *testing.B) {
	var buf bytes.Buffer
	if _, err := Generate(&buf, Options{Patients: 20, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	b.ResetTimer()
	for k := 0; b.Loop(); k++ {
		r, errs := clinic.Decode(lines[k%len(lines)])
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		if errs := clinic.Validate(r); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}
