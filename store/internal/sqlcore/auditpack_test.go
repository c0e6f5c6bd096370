package sqlcore

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"reflect"
	"runtime"
	"testing"
)

// TestPackRoundTrip: a pack decodes to the rows it was made of, whatever
// their keys, codes and byte columns, at any second (before 1970 too).
func TestPackRoundTrip(t *testing.T) {
	for _, sec := range []int64{0, 1_709_287_200, -3} {
		base := sec * 1000
		rows := []auditRow{
			{ms: base, idk: []byte("\x00a text id"), shape: 1, patient: 0, res: []byte{}, req: []byte{}},
			{ms: base, idk: bytes.Repeat([]byte{0x71}, 10), shape: 1 << 40, patient: 7, res: auditInline("obs-1"), req: []byte{2, 'x'}},
			{ms: base + 999, idk: bytes.Repeat([]byte{0xff}, 10), shape: 3, patient: 1<<31 + 5, res: auditCoded(300), req: []byte{3, 1, 2, 3, 4}},
		}
		got, err := unpackRows(sec, packRows(sec, rows))
		if err != nil {
			t.Fatalf("sec %d: %v", sec, err)
		}
		if !reflect.DeepEqual(got, rows) {
			t.Errorf("sec %d: got %+v, want %+v", sec, got, rows)
		}
	}
}

// TestPackMalformed: a body that is not a whole pack of its second is an
// error, never rows.
func TestPackMalformed(t *testing.T) {
	rows := []auditRow{{ms: 5_000, idk: bytes.Repeat([]byte{1}, 10), shape: 2, patient: 3, res: []byte{}, req: []byte{}}}
	good := packRows(5, rows)
	deflated := func(raw []byte) []byte {
		var b bytes.Buffer
		b.WriteByte(packFormat)
		w, _ := flate.NewWriter(&b, flate.BestSpeed)
		_, _ = w.Write(raw)
		_ = w.Close()
		return b.Bytes()
	}
	for name, body := range map[string][]byte{
		"empty":           nil,
		"unknown format":  append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing bytes":  deflated(append(binary.AppendUvarint(nil, 0), 1)),
		"past its second": deflated([]byte{1, 0xe8, 0x07, 2, 3, 0, 0, 0}), // a delta of 1000 ms
		"short column":    deflated([]byte{1, 0, 2, 3, 10, 1, 2}),
		"too many":        deflated(binary.AppendUvarint(nil, packMaxEvents+1)),
	} {
		if got, err := unpackRows(5, body); err == nil {
			t.Errorf("%s: decoded to %+v", name, got)
		}
	}
	if _, err := unpackRows(5, good); err != nil {
		t.Fatalf("the good pack: %v", err)
	}
}

// TestPackDeflaterOutlivesCollections: a pack costs its own bytes, not a
// new deflater (about 1 MB), even when collections ran since the last
// pack, as they do several times a second under read load
// (docs/design/security.md AUD-ARCH-7). A sync.Pool, which each
// collection empties, built one for almost every pack.
func TestPackDeflaterOutlivesCollections(t *testing.T) {
	rows := make([]auditRow, 500)
	for i := range rows {
		rows[i] = auditRow{ms: 5_000 + int64(i), idk: bytes.Repeat([]byte{byte(i)}, 10), shape: 1, patient: int64(i % 7),
			res: auditInline("obs-1"), req: []byte{3, 1, 2, 3, 4}}
	}
	packRows(5, rows) // the first pack makes the deflater
	const packs = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range packs {
		runtime.GC()
		runtime.GC()
		packRows(5, rows)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / packs; per > 64<<10 {
		t.Errorf("%d bytes allocated per pack of %d rows after two collections, want under 64 KiB (no new deflater)", per, len(rows))
	}
}
