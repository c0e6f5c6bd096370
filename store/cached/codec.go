package cached

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/ketabridge/ketabridge/store"
)

// The cached values' binary form. Every value starts with codecVersion and a
// kind byte; integers are varints; bodies are a uvarint length and the bytes
// as they are (never re-encoded). The strings of a Resource or Ref are their
// lengths, then their bytes together, so that decoding makes one string of
// them all and slices it: one allocation, not one per field. Slices and bodies
// store length+1, 0 meaning nil, so a decoded answer is the inner store's
// answer exactly, nil or empty alike. A change of layout changes
// codecVersion, which is also part of every cache key, so replicas of two
// versions never read each other's entries. (3: the stamps an entry is
// filed under changed with targeted invalidation; an entry of version 2
// filed under the old stamps must not be found under the new ones.)
const codecVersion = 3

// Values of at least compressAt bytes are stored s2-compressed, the kind
// byte marked with flagCompressed. FHIR JSON compresses about 7x (50
// Observations, 62 KB: 8.5 KB, 13 us to compress, 7 us to decompress), so a
// cache of a given size holds about seven times the answers, and Redis sends
// a seventh of the bytes.
const (
	compressAt     = 1024
	flagCompressed = 0x80
	// maxDecoded bounds what a compressed value may claim to expand to: no
	// allocation sized from a corrupt length.
	maxDecoded = 256 << 20
)

// Kinds of cached value.
const (
	kindResource byte = iota + 1
	kindSearch
	kindPage
	kindResources
	kindRefs
)

// Resource flags.
const flagDeleted = 1

var errCorrupt = errors.New("cached: corrupt cache entry")

// appendStrings writes the lengths of ss, then their bytes.
func appendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	for _, s := range ss {
		b = append(b, s...)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// appendLen writes a slice length, 0 for a nil slice.
func appendLen(b []byte, n int, isNil bool) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

// appendTime writes t as Unix milliseconds (the stores' precision) and the
// nanoseconds below the millisecond (0 from every store today: one byte), so
// the instant round-trips exactly whatever the precision. It decodes in UTC,
// as the stores return it.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.UnixMilli())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()%int(time.Millisecond)))
}

func appendResource(b []byte, r store.Resource) []byte {
	b = appendStrings(b, r.Type, r.ID, r.Patient)
	b = binary.AppendVarint(b, r.Version)
	b = appendTime(b, r.LastUpdated)
	var flags byte
	if r.Deleted {
		flags |= flagDeleted
	}
	b = append(b, flags)
	return appendBytes(b, r.Body)
}

func appendResources(b []byte, rs []store.Resource) []byte {
	// Grown once for the whole list (about 20 bytes of varints and flags
	// a resource besides its strings and body), not doubled entry by entry:
	// a 500-resource page is about 650 KB.
	n := 16
	for i := range rs {
		r := &rs[i]
		n += len(r.Type) + len(r.ID) + len(r.Patient) + len(r.Body) + 32
	}
	b = slices.Grow(b, n)
	b = appendLen(b, len(rs), rs == nil)
	for _, r := range rs {
		b = appendResource(b, r)
	}
	return b
}

// The encoders append a value of each kind to dst (store/cached fills from
// pooled scratch buffers, PERF-ST-11); the encodeX forms allocate.

func encResource(dst []byte, r store.Resource) []byte {
	return appendResource(append(dst, codecVersion, kindResource), r)
}

func encSearch(dst []byte, res store.SearchResult) []byte {
	b := appendResources(append(dst, codecVersion, kindSearch), res.Resources)
	b = binary.AppendVarint(b, int64(res.Total))
	if res.More {
		return append(b, 1)
	}
	return append(b, 0)
}

func encPage(dst []byte, p page) []byte {
	b := appendResources(append(dst, codecVersion, kindPage), p.rs)
	return binary.AppendVarint(b, int64(p.total))
}

func encResources(dst []byte, rs []store.Resource) []byte {
	return appendResources(append(dst, codecVersion, kindResources), rs)
}

func encRefs(dst []byte, refs []store.Ref) []byte {
	b := appendLen(append(dst, codecVersion, kindRefs), len(refs), refs == nil)
	for _, r := range refs {
		b = appendStrings(b, r.From.Type, r.From.ID, r.Param, r.Target.Type, r.Target.ID)
	}
	return b
}

func encodeResource(r store.Resource) []byte     { return encResource(nil, r) }
func encodeSearch(res store.SearchResult) []byte { return encSearch(nil, res) }
func encodePage(p page) []byte                   { return encPage(nil, p) }
func encodeResources(rs []store.Resource) []byte { return encResources(nil, rs) }
func encodeRefs(refs []store.Ref) []byte         { return encRefs(nil, refs) }

// page is an Everything answer: a page of resources and the total.
type page struct {
	rs    []store.Resource
	total int
}

// pack compresses an encoded value of at least compressAt bytes.
func pack(b []byte) []byte { return packTo(nil, b) }

// packTo is pack writing the compressed value into dst's memory (grown if
// needed); a value below compressAt is returned as it is.
func packTo(dst, b []byte) []byte {
	if len(b) < compressAt {
		return b
	}
	out := slices.Grow(dst[:0], 2+s2.MaxEncodedLen(len(b)-2))[:2]
	out[0], out[1] = b[0], b[1]|flagCompressed
	enc := s2.Encode(out[2:cap(out)], b[2:]) // written in place: dst is large enough
	return out[:2+len(enc)]
}

// unpack undoes pack. A value it cannot expand is corrupt.
func unpack(b []byte) ([]byte, error) {
	if len(b) < 2 || b[1]&flagCompressed == 0 {
		return b, nil
	}
	n, err := s2.DecodedLen(b[2:])
	if err != nil || n > maxDecoded {
		return nil, fmt.Errorf("%w: bad compressed length", errCorrupt)
	}
	out := make([]byte, 2+n)
	out[0], out[1] = b[0], b[1]&^flagCompressed
	if _, err := s2.Decode(out[2:], b[2:]); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return out, nil
}

// unpackCopy is unpack of a value it must not share: the bytes of the
// in-process cache's ring, overwritten by later entries (store/memory
// View). A compressed value is expanded into new memory anyway; a small
// plain one is copied.
func unpackCopy(b []byte) ([]byte, error) {
	if len(b) < 2 || b[1]&flagCompressed == 0 {
		return append(make([]byte, 0, len(b)), b...), nil
	}
	return unpack(b)
}

// decoder reads a value; the first failure sticks in err and every later
// read returns zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func newDecoder(b []byte, kind byte) decoder {
	d := decoder{b: b}
	if len(b) < 2 || b[0] != codecVersion || b[1] != kind {
		d.fail("header")
		return d
	}
	d.b = b[2:]
	return d
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
		d.b = nil
	}
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// raw returns the next n bytes (aliasing the input).
func (d *decoder) raw(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// strings reads len(out) strings written by appendStrings into out.
func (d *decoder) strings(out ...*string) {
	var lens [5]uint64
	var total uint64
	for i := range out {
		lens[i] = d.uvarint()
		total += lens[i]
		if lens[i] > uint64(len(d.b)) {
			d.fail("length")
		}
	}
	raw := d.raw(total)
	if d.err != nil {
		return
	}
	all := string(raw)
	for i, p := range out {
		*p, all = all[:lens[i]], all[lens[i]:]
	}
}

// bytes returns a copy: the input may be the cache's own storage.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	// A body shares the value's bytes instead of copying them (an entry
	// of $everything copied 500 bodies on every hit): store.Cache.Lookup
	// hands over bytes that never change. The capacity ends at the body,
	// so an append to it reallocates instead of writing into the value.
	v := d.raw(n - 1)
	return v[:len(v):len(v)]
}

// count reads a slice length and reports whether the slice is nil. A length
// beyond what the remaining input could hold (each element takes at least
// min bytes) is corrupt: no allocation sized from bad input.
func (d *decoder) count(min int) (n int, isNil bool) {
	v := d.uvarint()
	if v == 0 || d.err != nil {
		return 0, true
	}
	if v-1 > uint64(len(d.b)/min) {
		d.fail("count")
		return 0, true
	}
	return int(v - 1), false
}

func (d *decoder) time() time.Time {
	ms := d.varint()
	sub := d.uvarint()
	if sub >= uint64(time.Millisecond) {
		d.fail("time")
	}
	return time.UnixMilli(ms).Add(time.Duration(sub)).UTC()
}

func (d *decoder) resource() store.Resource {
	var r store.Resource
	d.strings(&r.Type, &r.ID, &r.Patient)
	r.Version = d.varint()
	r.LastUpdated = d.time()
	flags := d.byte()
	if flags&^flagDeleted != 0 {
		d.fail("flags")
	}
	r.Deleted = flags&flagDeleted != 0
	r.Body = d.bytes()
	return r
}

// minResource is the fewest bytes an encoded Resource takes.
const minResource = 8

func (d *decoder) resources() []store.Resource {
	n, isNil := d.count(minResource)
	if isNil {
		return nil
	}
	rs := make([]store.Resource, n)
	for i := range rs {
		rs[i] = d.resource()
	}
	return rs
}

// done reports the first failure, or trailing bytes.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("length (trailing bytes)")
	}
	return d.err
}

func decodeResource(b []byte) (store.Resource, error) {
	d := newDecoder(b, kindResource)
	r := d.resource()
	return r, d.done()
}

func decodeSearch(b []byte) (store.SearchResult, error) {
	d := newDecoder(b, kindSearch)
	var res store.SearchResult
	res.Resources = d.resources()
	res.Total = int(d.varint())
	switch d.byte() {
	case 0:
	case 1:
		res.More = true
	default:
		d.fail("more")
	}
	return res, d.done()
}

func decodePage(b []byte) (page, error) {
	d := newDecoder(b, kindPage)
	var p page
	p.rs = d.resources()
	p.total = int(d.varint())
	return p, d.done()
}

func decodeResources(b []byte) ([]store.Resource, error) {
	d := newDecoder(b, kindResources)
	rs := d.resources()
	return rs, d.done()
}

func decodeRefs(b []byte) ([]store.Ref, error) {
	d := newDecoder(b, kindRefs)
	n, isNil := d.count(5)
	if isNil {
		return nil, d.done()
	}
	refs := make([]store.Ref, n)
	for i := range refs {
		r := &refs[i]
		d.strings(&r.From.Type, &r.From.ID, &r.Param, &r.Target.Type, &r.Target.ID)
	}
	return refs, d.done()
}
