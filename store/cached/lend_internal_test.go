package cached

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// unpackLent expands a compressed value as unpack does, into a lent buffer
// while the Lease is held and into memory of its own once it is released
// (PERF-ST-18).
func TestUnpackLent(t *testing.T) {
	plain := encodeResource(store.Resource{Type: "Observation", ID: "o1", Body: []byte(strings.Repeat(`{"a":"b"},`, 400))})
	packed := pack(plain)
	if packed[1]&flagCompressed == 0 {
		t.Fatal("the value is not compressed")
	}
	_, l := store.WithLease(context.Background())
	out, lent, err := unpackLent(packed, l)
	if err != nil || !lent || !bytes.Equal(out, plain) {
		t.Fatalf("held lease: lent %v, err %v, same bytes %v", lent, err, bytes.Equal(out, plain))
	}
	if cap(out) != len(out) {
		t.Fatalf("a lent value's capacity %d runs past its %d bytes", cap(out), len(out))
	}
	l.Release()
	out, lent, err = unpackLent(packed, l)
	if err != nil || lent || !bytes.Equal(out, plain) {
		t.Fatalf("released lease: lent %v, err %v, same bytes %v", lent, err, bytes.Equal(out, plain))
	}
	_, l = store.WithLease(context.Background())
	defer l.Release()
	small := encodeResource(store.Resource{Type: "Observation", ID: "o2"})
	if out, lent, err := unpackLent(small, l); err != nil || lent || !bytes.Equal(out, small) {
		t.Fatalf("plain value: lent %v, err %v", lent, err)
	}
	if _, _, err := unpackLent(append(packed[:len(packed)-3:len(packed)-3], 0xff), l); err == nil {
		t.Fatal("a corrupt value expanded")
	}
}
