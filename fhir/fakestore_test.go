package fhir

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// fakeStore is an in-memory Reader for the HTTP tests: versions per
// key, index rows per current version, naive matching. fail, when set, is
// returned by every read method; panics makes them panic.
type fakeStore struct {
	mu       sync.Mutex
	versions map[store.Key][]store.Resource // oldest first
	index    map[store.Key][]store.IndexRow
	fail     error
	panics   bool
	queries  []store.Query // every Search, for assertions
}

var _ Reader = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{versions: map[store.Key][]store.Resource{}, index: map[store.Key][]store.IndexRow{}}
}

// put stores a new version of a resource: body is canonical JSON starting
// with "id", stamped like the real store does.
func (f *fakeStore) put(typ, id, patient string, at time.Time, body string, rows ...store.IndexRow) {
	k := store.Key{Type: typ, ID: id}
	v := int64(len(f.versions[k]) + 1)
	stamped, err := store.StampMeta([]byte(body), v, at)
	if err != nil {
		panic(err)
	}
	f.versions[k] = append(f.versions[k], store.Resource{
		Type: typ, ID: id, Version: v, LastUpdated: at.UTC(), Patient: patient, Body: stamped,
	})
	f.index[k] = rows
}

// del appends a deletion version.
func (f *fakeStore) del(typ, id string, at time.Time) {
	k := store.Key{Type: typ, ID: id}
	vs := f.versions[k]
	f.versions[k] = append(vs, store.Resource{
		Type: typ, ID: id, Version: int64(len(vs) + 1), LastUpdated: at.UTC(), Deleted: true, Patient: vs[len(vs)-1].Patient,
	})
	delete(f.index, k)
}

func (f *fakeStore) check() error {
	if f.panics {
		panic("fake store panic with PHI-like value: Jane Doe")
	}
	return f.fail
}

func (f *fakeStore) Read(_ context.Context, typ, id string) (store.Resource, error) {
	if err := f.check(); err != nil {
		return store.Resource{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := f.versions[store.Key{Type: typ, ID: id}]
	if len(vs) == 0 {
		return store.Resource{}, store.ErrNotFound
	}
	r := vs[len(vs)-1]
	if r.Deleted {
		return r, store.ErrGone
	}
	return r, nil
}

func (f *fakeStore) VRead(_ context.Context, typ, id string, version int64) (store.Resource, error) {
	if err := f.check(); err != nil {
		return store.Resource{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := f.versions[store.Key{Type: typ, ID: id}]
	if version < 1 || int(version) > len(vs) {
		return store.Resource{}, store.ErrNotFound
	}
	r := vs[version-1]
	if r.Deleted {
		return r, store.ErrGone
	}
	return r, nil
}

func (f *fakeStore) History(_ context.Context, typ, id string, count, offset int) ([]store.Resource, int, error) {
	if err := f.check(); err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := slices.Clone(f.versions[store.Key{Type: typ, ID: id}])
	if len(vs) == 0 {
		return nil, 0, store.ErrNotFound
	}
	slices.Reverse(vs)
	return page(vs, count, offset), len(vs), nil
}

func page[T any](xs []T, count, offset int) []T {
	if offset >= len(xs) {
		return nil
	}
	return xs[offset:min(len(xs), offset+count)]
}

func (f *fakeStore) GetMany(_ context.Context, keys []store.Key) ([]store.Resource, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Resource
	for _, k := range keys {
		if vs := f.versions[k]; len(vs) > 0 && !vs[len(vs)-1].Deleted {
			out = append(out, vs[len(vs)-1])
		}
	}
	return out, nil
}

// current returns the current non-deleted versions sorted by type and id.
func (f *fakeStore) current() []store.Resource {
	var out []store.Resource
	for _, vs := range f.versions {
		if r := vs[len(vs)-1]; !r.Deleted {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Resource) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func (f *fakeStore) matches(r store.Resource, c store.Clause) bool {
	for _, v := range c.Values {
		if c.Param == store.ParamID {
			if v.Str == r.ID {
				return true
			}
			continue
		}
		for _, row := range f.index[store.Key{Type: r.Type, ID: r.ID}] {
			if row.Param != c.Param {
				continue
			}
			switch c.Kind {
			case store.KindToken:
				if row.Code == v.Code && (v.AnySystem || row.System == v.System) {
					return true
				}
			case store.KindReference:
				if row.Value == v.Str {
					return true
				}
			case store.KindString:
				if strings.HasPrefix(row.Value, v.Str) {
					return true
				}
			}
		}
	}
	return false
}

func (f *fakeStore) Search(_ context.Context, q store.Query) (store.SearchResult, error) {
	if err := f.check(); err != nil {
		return store.SearchResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	var all []store.Resource
	for _, r := range f.current() {
		if r.Type != q.Type || (len(q.Patients) > 0 && !slices.Contains(q.Patients, r.Patient)) {
			continue
		}
		ok := true
		for _, c := range q.Clauses {
			ok = ok && f.matches(r, c)
		}
		if ok {
			all = append(all, r)
		}
	}
	res := store.SearchResult{Total: -1}
	if q.Total {
		res.Total = len(all)
	}
	if q.CountOnly {
		return res, nil
	}
	res.Resources = page(all, q.Count, q.Offset)
	res.More = q.Offset+len(res.Resources) < len(all)
	return res, nil
}

func (f *fakeStore) Refs(_ context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Ref
	for _, k := range from {
		for _, row := range f.index[k] {
			if row.Kind != store.KindReference || (len(params) > 0 && !slices.Contains(params, row.Param)) {
				continue
			}
			t, id, _ := strings.Cut(row.Value, "/")
			out = append(out, store.Ref{From: k, Param: row.Param, Target: store.Key{Type: t, ID: id}})
		}
	}
	return out, nil
}

func (f *fakeStore) Everything(_ context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	if err := f.check(); err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []store.Resource
	for _, r := range f.current() {
		if r.Patient != q.Patient || (len(q.Types) > 0 && !slices.Contains(q.Types, r.Type)) ||
			(!q.Since.IsZero() && r.LastUpdated.Before(q.Since)) {
			continue
		}
		all = append(all, r)
	}
	// Patient first.
	slices.SortStableFunc(all, func(a, b store.Resource) int {
		return cmp.Compare(boolInt(a.Type != "Patient"), boolInt(b.Type != "Patient"))
	})
	return page(all, q.Count, q.Offset), len(all), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
