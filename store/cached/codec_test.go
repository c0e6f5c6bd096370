package cached

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

var (
	ms  = time.Date(2024, 3, 1, 10, 0, 0, 123_000_000, time.UTC) // the stores' precision
	sub = time.Date(2024, 3, 1, 10, 0, 0, 123_456_789, time.UTC)
	old = time.Date(1901, 12, 13, 20, 45, 52, 999_000_000, time.UTC) // before 1970: negative ms
)

func resources() []store.Resource {
	return []store.Resource{
		{Type: "Patient", ID: "p1", Version: 3, LastUpdated: ms, Patient: "p1", Body: []byte(`{"id":"p1","name":[{"text":"Zoë"}]}`)},
		{Type: "Observation", ID: "o-ü", Version: 2, LastUpdated: sub, Deleted: true, Patient: "p1"},
		{Type: "Observation", ID: "o2", Version: math.MaxInt64, LastUpdated: old, Body: []byte{}},
		{Type: "Practitioner", ID: "pr1", Version: 1},
		{Body: []byte{0, 0xff, '\n'}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	rs := resources()
	type tc struct {
		name string
		v    any
		rt   func(any) (any, error)
	}
	cases := []tc{}
	for _, r := range rs {
		cases = append(cases, tc{"resource " + r.Type + "/" + r.ID, r, func(v any) (any, error) {
			return decodeResource(encodeResource(v.(store.Resource)))
		}})
	}
	search := func(v any) (any, error) { return decodeSearch(encodeSearch(v.(store.SearchResult))) }
	pg := func(v any) (any, error) { return decodePage(encodePage(v.(page))) }
	list := func(v any) (any, error) { return decodeResources(encodeResources(v.([]store.Resource))) }
	refs := func(v any) (any, error) { return decodeRefs(encodeRefs(v.([]store.Ref))) }
	cases = append(cases,
		tc{"search", store.SearchResult{Resources: rs, Total: 5, More: true}, search},
		tc{"search, no total, nil", store.SearchResult{Total: -1}, search},
		tc{"search, empty", store.SearchResult{Resources: []store.Resource{}}, search},
		tc{"page", page{rs[:2], 1 << 40}, pg},
		tc{"page, nil", page{}, pg},
		tc{"resources", rs, list},
		tc{"resources, nil", []store.Resource(nil), list},
		tc{"resources, empty", []store.Resource{}, list},
		tc{"refs", []store.Ref{
			{From: store.Key{Type: "Observation", ID: "o1"}, Param: "subject", Target: store.Key{Type: "Patient", ID: "p1"}},
			{From: store.Key{Type: "Observation", ID: "o1"}, Param: "performer", Target: store.Key{Type: "Practitioner", ID: "pr-ß"}},
		}, refs},
		tc{"refs, nil", []store.Ref(nil), refs},
		tc{"refs, empty", []store.Ref{}, refs},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.rt(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.v) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, c.v)
			}
		})
	}
}

func TestCodecTimeInUTC(t *testing.T) {
	// The stores return UTC; another zone decodes as the same instant in UTC.
	at := ms.In(time.FixedZone("X", 3*3600))
	r, err := decodeResource(encodeResource(store.Resource{LastUpdated: at}))
	if err != nil || !r.LastUpdated.Equal(at) || r.LastUpdated.Location() != time.UTC {
		t.Errorf("LastUpdated = %v, %v; want %v in UTC", r.LastUpdated, err, at)
	}
}

func TestCodecBodyAppendDoesNotWriteTheEntry(t *testing.T) {
	// A decoded body shares the entry's bytes (store.Resource.Body is
	// read-only); appending to it must reallocate, not overwrite what
	// follows it in the entry.
	b := encodeSearch(store.SearchResult{Resources: []store.Resource{{Body: []byte("abc")}, {Body: []byte("def")}}})
	r, err := decodeSearch(b)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(r.Resources[0].Body, "XYZXYZXYZ"...)
	again, err := decodeSearch(b)
	if err != nil || string(again.Resources[0].Body) != "abc" || string(again.Resources[1].Body) != "def" {
		t.Errorf("appending to a decoded body changed the entry: %v, %v", again.Resources, err)
	}
}

func TestCodecCompressesLargeValues(t *testing.T) {
	var rs []store.Resource
	for i := range 50 {
		rs = append(rs, store.Resource{Type: "Observation", ID: fmt.Sprint("o", i), Version: 1, LastUpdated: ms,
			Body: []byte(fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":%d,"unit":"/min"}}`, i, 60+i))})
	}
	want := store.SearchResult{Resources: rs, Total: 50}
	plain := encodeSearch(want)
	packed := pack(plain)
	if packed[1]&flagCompressed == 0 || len(packed) >= len(plain)/3 {
		t.Fatalf("packed %d bytes of %d, flag %x: want compressed", len(packed), len(plain), packed[1])
	}
	un, err := unpack(packed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSearch(un)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v, %v", got, err)
	}

	small := encodeResource(store.Resource{Type: "Patient", ID: "p1", Body: []byte(`{}`)})
	if p := pack(small); !bytes.Equal(p, small) {
		t.Errorf("a small value was changed: %x", p)
	}
	for name, bad := range map[string][]byte{
		"garbage":        append([]byte{codecVersion, kindSearch | flagCompressed}, 0x05, 0xff, 0xff),
		"truncated":      packed[:len(packed)/2],
		"huge length":    append([]byte{codecVersion, kindSearch | flagCompressed}, binary.AppendUvarint(nil, 1<<40)...),
		"no data at all": {codecVersion, kindSearch | flagCompressed},
	} {
		if _, err := unpack(bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: unpack = %v, want errCorrupt", name, err)
		}
	}
}

func TestCodecCorrupt(t *testing.T) {
	valid := map[string][]byte{
		"resource":  encodeResource(resources()[0]),
		"search":    encodeSearch(store.SearchResult{Resources: resources(), Total: 5}),
		"page":      encodePage(page{resources(), 5}),
		"resources": encodeResources(resources()),
		"refs":      encodeRefs([]store.Ref{{From: store.Key{Type: "A", ID: "1"}, Param: "p", Target: store.Key{Type: "B", ID: "2"}}}),
	}
	decoders := map[string]func([]byte) error{
		"resource":  func(b []byte) error { _, err := decodeResource(b); return err },
		"search":    func(b []byte) error { _, err := decodeSearch(b); return err },
		"page":      func(b []byte) error { _, err := decodePage(b); return err },
		"resources": func(b []byte) error { _, err := decodeResources(b); return err },
		"refs":      func(b []byte) error { _, err := decodeRefs(b); return err },
	}
	for name, b := range valid {
		dec := decoders[name]
		t.Run(name, func(t *testing.T) {
			if err := dec(b); err != nil {
				t.Fatalf("valid: %v", err)
			}
			// Every truncation, trailing garbage, another version or kind.
			for n := range len(b) {
				if err := dec(b[:n]); !errors.Is(err, errCorrupt) {
					t.Errorf("truncated to %d bytes: err = %v", n, err)
				}
			}
			for _, bad := range [][]byte{
				append(append([]byte(nil), b...), 0),
				append([]byte{codecVersion + 1}, b[1:]...),
				append([]byte{codecVersion, 99}, b[2:]...),
			} {
				if err := dec(bad); !errors.Is(err, errCorrupt) {
					t.Errorf("%x: err = %v", bad[:2], err)
				}
			}
		})
	}
	t.Run("huge count", func(t *testing.T) {
		// A count far beyond the input must fail before allocating it.
		b := append([]byte{codecVersion, kindResources}, 0xff, 0xff, 0xff, 0xff, 0x0f)
		if _, err := decodeResources(b); !errors.Is(err, errCorrupt) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestBucketIsStable(t *testing.T) {
	// Every replica, of every version, must put a resource in the same
	// bucket, or a write through one would not invalidate another's
	// entries: the hash (FNV-1a 64, as hash/fnv New64a) is fixed here.
	s := New(nil, nil, Options{})
	for _, tc := range []struct{ typ, id, want string }{
		{"Patient", "p1", "r:12744"},
		{"Observation", "0c6a7d0e-5d2c-5b8e-9a53-0f0b5c1f1d11", "r:59778"},
	} {
		if got := s.bucket(tc.typ, tc.id); got != tc.want {
			t.Errorf("bucket(%s/%s) = %s, want %s", tc.typ, tc.id, got, tc.want)
		}
	}
}
