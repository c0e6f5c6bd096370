// Package cached is the read cache in front of a store.Store: a decorator that
// serves Read, Search, Everything, GetMany and Refs through a store.Cache
// (Redis shared by replicas, or store/memory in the embedded mode) and
// invalidates after every Apply, so an answer is never older than a write
// whose Apply returned before the read began, on any replica.
//
// Invalidation is by version stamps (see store.Cache): every entry is filled
// at the values of its stamps, and Apply bumps the stamps of what it wrote,
// so a write drops exactly the answers that could contain what it wrote
// (docs/design/security.md CACHE-1):
//
//   - "e", the epoch, is under every entry; bumping it drops the whole cache.
//   - "r:{bucket}" is under the entries of the resources hashing to the
//     bucket: Read of the resource, and GetMany and Refs of key sets that
//     include it. Apply bumps the buckets of every resource it wrote or
//     deleted.
//   - "t:{type}" is under the searches of the type that name no
//     compartment (or too many): a search's answer depends only on the
//     resources of its own type (its clauses, its Patients and its Access
//     terms all test the resource itself), so Apply bumps the type of every
//     resource it wrote.
//   - "q:{type}:{compartment bucket}" is under the searches of the type
//     whose matches all lie in at most maxCompartmentStamps named patients'
//     compartments (store.Query.Compartments), one stamp per compartment;
//     "p:{compartment bucket}" is under Patient/$everything of the
//     patients hashing to the bucket. Apply bumps them for the compartment
//     each written resource is in now and the one it was in before (read
//     from the version before the write: versions never change, so no
//     concurrent write can make that answer wrong).
//   - "m" is under every compartment entry ("q:" and "p:"): Apply bumps it
//     instead of reading previous compartments when a batch updates or
//     deletes more than maxPrevious resources, or when a previous version
//     cannot be read (fail closed).
//
// An access restriction (Query.Access, Query.Patients) is part of an
// answer's key, so a write that changes a caller's disclosure decision (a
// Consent, a Coverage) leads to a different key, never to a stale hit: the
// decision itself is read from Consent and Coverage searches, under their
// types' stamps (fhir/disclosure.go).
//
// The cache fails open: when it cannot be reached, reads are served by the
// store, uncached, after at most Options.Timeout. But when a Bump fails the
// cache may hold data older than the write, so Apply retries it for a few
// seconds and then returns an error (store.ErrUnavailable; a
// store.StaleCacheError when the write itself succeeded) and the decorator
// stops using the cache until it has bumped the epoch.
//
// Cache keys are SHA-256 hashes and stamps bucket numbers: never PHI. Values
// hold resource bodies and live for Options.TTL.
package cached

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// Defaults of Options.
const (
	DefaultTTL     = 5 * time.Minute
	DefaultTimeout = 50 * time.Millisecond
	DefaultBuckets = 1 << 16
)

// bumpTimeout bounds one attempt at Apply's Bump. It is longer than a read's
// Timeout: a write's invalidation is worth waiting for, and giving up on it
// turns the write into an error.
const bumpTimeout = time.Second

// bumpBudget bounds all of Apply's attempts at its Bump, retried with
// backoff (a variable for tests). One round trip to Redis, bounded by the
// client's 500 ms read timeout, did not always finish on a gateway whose
// cores were shared eight ways (the soaks of 2026-12-06, docs/benchmarks.md):
// the write had committed, and a single late answer turned it into a 503.
// A few seconds of retries outlast such stalls and the soak's 3-second Redis
// holds; a Redis that stays away still gets its documented 503
// (docs/design/security.md IN-6).
var bumpBudget = 4 * time.Second

// bumpBackoff is the wait after the first failed attempt; it doubles.
var bumpBackoff = 100 * time.Millisecond

// Stamp names (see the package documentation).
const (
	epoch = "e"
	moved = "m"
)

// compartmentBuckets is how many "p:" and "q:{type}:" stamps compartments
// hash into. Fixed, so that every replica agrees, and small enough that the
// in-memory cache's stamp map stays bounded (types x buckets).
const compartmentBuckets = 1 << 12

// maxCompartmentStamps is the most compartments a search may name and still
// be filed under their "q:" stamps rather than its type's "t:" stamp.
const maxCompartmentStamps = 8

// maxPrevious bounds the previous versions Apply reads to learn the
// compartments resources left: a larger batch of updates and deletions (a
// re-ingest) bumps "m" instead.
const maxPrevious = 64

// Options configure a Store; zero values take the defaults.
type Options struct {
	// TTL is how long an entry lives (DefaultTTL).
	TTL time.Duration
	// Timeout bounds each cache call made for a read, and the epoch Bump
	// made when the cache is dirty (DefaultTimeout): a hung cache costs a
	// read at most about this much before it is served by the store.
	Timeout time.Duration
	// Buckets is how many "r:" stamps resources hash into (DefaultBuckets).
	// More buckets mean fewer entries dropped needlessly by a write to
	// another resource of the same bucket. Replicas sharing a cache must use
	// the same value, or a write through one would bump buckets the others'
	// entries are not under.
	Buckets int
	// Observer, when set, is told of hits, misses and errors (metrics).
	Observer Observer
	// NearBytes, when positive and the cache is shared between processes
	// (it implements store.NearCache: Redis), bounds an in-process near
	// cache of decoded answers in front of it (see near). Every lookup
	// checks the stamps are unchanged: from the shared cache, or without
	// a round trip while its watch vouches for them (store.Watched,
	// CACHE-3).
	NearBytes int64
}

// Ops are the op names an Observer receives.
var Ops = []string{"read", "search", "everything", "getmany", "refs", "bump", "versions"}

// Observer receives cache events, with op one of Ops. Any func may be nil. They are
// called on the request path: keep them cheap (a counter increment).
type Observer struct {
	Hit, Miss, Error func(op string)
}

func (o *Observer) hit(op string) {
	if o.Hit != nil {
		o.Hit(op)
	}
}

func (o *Observer) miss(op string) {
	if o.Miss != nil {
		o.Miss(op)
	}
}

func (o *Observer) error(op string) {
	if o.Error != nil {
		o.Error(op)
	}
}

// Store is the caching store.Store. Safe for concurrent use.
//
// It implements store.Store only. Callers that type-assert the optional
// interfaces of the backend (store.AuthStore, store.AuditStore) use Inner():
// that state is not cached, and a decorator hiding it would fail those
// assertions silently.
type Store struct {
	st   store.Store
	c    store.Cache
	opts Options

	// local is set for the in-process cache (store/memory), whose calls
	// never block: no timeout (a timer per call) is needed to bound them.
	local bool
	// mem is that cache, read in place with View (nil for another cache).
	mem *memory.Cache
	// hot shares the decoded answers of mem's largest recent hits
	// (PERF-ST-10).
	hot hot
	// recent decides which large pages go to hot rather than being lent
	// (PERF-ST-18, lend.go).
	recent *seenTable
	// fl are the store loads of misses in progress (flight.go, CACHE-7).
	fl flights

	// near is the near cache in front of nc (nil when off).
	near *near
	// door admits reads by id to near on their second miss (near.go).
	door *doorkeeper
	nc   store.NearCache
	// watched, when the shared cache offers it, answers stamp values
	// without a round trip while it can vouch for them (CACHE-3).
	watched store.Watched
	// knownAt, when the shared cache offers it, checks a near entry's
	// stamp values against the watch's without encoding them (CACHE-5).
	knownAt func(stamps []string, at string) bool

	// bucketNames holds every "r:" stamp name, back to back, and
	// bucketEnds where each ends: bucket takes its name as a substring
	// instead of building a string on every read (CACHE-5), and the
	// table is two objects without pointers inside for the collector.
	bucketNames string
	bucketEnds  []uint32

	// The cache is dirty while failed != cleared: a Bump failed, so entries
	// older than a write may still be found. A successful epoch Bump sets
	// cleared to the failures counted before it began.
	failed     atomic.Uint64
	cleared    atomic.Uint64
	recovering sync.Mutex // one epoch Bump at a time

	closed atomic.Bool
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.TypeVersioner = (*Store)(nil)
)

// New returns st with reads cached in c. Closing the Store closes st, not c.
func New(st store.Store, c store.Cache, opts Options) *Store {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Buckets <= 0 {
		opts.Buckets = DefaultBuckets
	}
	mem, local := c.(*memory.Cache)
	s := &Store{st: st, c: c, opts: opts, local: local, mem: mem}
	s.bucketNames, s.bucketEnds = bucketTable(opts.Buckets)
	s.recent = newSeenTable(recentSlots)
	if nc, ok := c.(store.NearCache); ok && opts.NearBytes > 0 && !local {
		s.near, s.nc, s.door = newNear(opts.NearBytes), nc, newDoorkeeper()
		s.watched, _ = c.(store.Watched)
		if k, ok := c.(interface {
			KnownAt(stamps []string, at string) bool
		}); ok && s.watched != nil {
			s.knownAt = k.KnownAt
		}
		if p, ok := c.(store.Preloaded); ok && s.watched != nil {
			// The stamps of every read by id (the epoch and each resource
			// bucket) are in the mirror from the start of each session, so
			// a read by id's miss and its fill make no Redis round trip
			// (CACHE-4); searches' stamps are learned on use (CACHE-3).
			names := make([]string, 0, s.opts.Buckets+1)
			names = append(names, epoch)
			start := uint32(0)
			for _, end := range s.bucketEnds {
				names = append(names, s.bucketNames[start:end])
				start = end
			}
			p.Preload(names)
		}
	}
	return s
}

// NearSize returns the bytes the near cache holds (0 when it is off).
func (s *Store) NearSize() int64 {
	if s.near == nil {
		return 0
	}
	return s.near.size()
}

// bounded returns ctx limited to opts.Timeout for a cache call.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.local {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// Inner returns the decorated store, for its optional interfaces
// (store.AuthStore, store.AuditStore) and anything else not cached.
func (s *Store) Inner() store.Store { return s.st }

// fnv is FNV-1a of "typ/id", the same on every replica.
func fnv(typ, id string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(typ); i++ {
		h = (h ^ uint64(typ[i])) * prime
	}
	h = (h ^ '/') * prime
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * prime
	}
	return h
}

// bucket returns the "r:" stamp of the resource typ/id.
func (s *Store) bucket(typ, id string) string {
	b := fnv(typ, id) % uint64(s.opts.Buckets)
	start := uint32(0)
	if b > 0 {
		start = s.bucketEnds[b-1]
	}
	return s.bucketNames[start:s.bucketEnds[b]]
}

// bucketTable returns the names "r:0" to "r:{n-1}" back to back and where
// each ends.
func bucketTable(n int) (string, []uint32) {
	var b []byte
	ends := make([]uint32, n)
	for i := range n {
		b = strconv.AppendUint(append(b, "r:"...), uint64(i), 10)
		ends[i] = uint32(len(b))
	}
	return string(b), ends
}

// compartment returns the compartment bucket of the patient id (a number,
// never the id: stamps hold no PHI).
func compartment(patient string) string {
	return strconv.FormatUint(fnv("Patient", patient)%compartmentBuckets, 10)
}

// typeStamp is the "t:" stamp of typ's searches.
func typeStamp(typ string) string { return "t:" + typ }

// searchCompartmentStamp is the "q:" stamp of typ's searches in the
// compartment bucket b.
func searchCompartmentStamp(typ, b string) string { return "q:" + typ + ":" + b }

// everythingStamp is the "p:" stamp of $everything in the compartment
// bucket b.
func everythingStamp(b string) string { return "p:" + b }

// searchStamps returns the stamps of q's answer: its compartments' "q:"
// stamps when it names a few (and "m"), else its type's "t:" stamp.
func searchStamps(q *store.Query) []string {
	cs := q.Compartments()
	if len(cs) == 0 || len(cs) > maxCompartmentStamps {
		return []string{epoch, typeStamp(q.Type)}
	}
	stamps := make([]string, 2, 2+len(cs))
	stamps[0], stamps[1] = epoch, moved
	for _, p := range cs {
		st := searchCompartmentStamp(q.Type, compartment(p))
		if !slices.Contains(stamps, st) {
			stamps = append(stamps, st)
		}
	}
	return stamps
}

// keyStamps returns the stamps of an answer about the resources keys: the
// epoch and each key's bucket, once.
func (s *Store) keyStamps(keys []store.Key) []string {
	stamps := make([]string, 1, len(keys)+1)
	stamps[0] = epoch
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		b := s.bucket(k.Type, k.ID)
		if !seen[b] {
			seen[b] = true
			stamps = append(stamps, b)
		}
	}
	return stamps
}

// cacheKey is the key of op's answer to the arguments args: the SHA-256 of
// the op, the codec version and args, in hex.
func cacheKey(op string, args []byte) string {
	h := sha256.New()
	h.Write([]byte(op))
	h.Write([]byte{0, codecVersion, 0})
	h.Write(args)
	var sum [sha256.Size]byte
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], h.Sum(sum[:0]))
	return string(out[:])
}

// jsonKey is cacheKey of the JSON encoding of args (deterministic for the
// structs and slices the ops take). ok is false when args cannot be encoded
// (a NaN in a number search): that call is not cached.
func jsonKey(op string, args any) (key string, ok bool) {
	b, err := json.Marshal(args)
	if err != nil {
		return "", false
	}
	return cacheKey(op, b), true
}

// accessKey is the key of op's answer to a query whose restriction is a
// and whose other arguments are rest (with no restriction of its own): as
// cacheKey, of the JSON encoding of rest and then of a in a
// length-prefixed binary form. A payer's restriction lists thousands of
// patients: JSON-encoding them made the key of a search three times as
// costly (BenchmarkAccessKey: 150 µs against 50 for 2,000 patients, most
// of it the hash). ok is false when rest cannot be encoded.
func accessKey(op string, rest any, a *store.Access) (key string, ok bool) {
	b, err := json.Marshal(rest)
	if err != nil {
		return "", false
	}
	if a == nil {
		return cacheKey(op, append(b, 0, 'n')), true
	}
	size := len(b) + 2 + binary.MaxVarintLen64
	for _, t := range a.Terms {
		size += 3 * binary.MaxVarintLen64
		for _, l := range [2][]string{t.Patients, t.Types} {
			for _, s := range l {
				size += 2 + len(s) // a uvarint of a length below 16384 takes 2 bytes
			}
		}
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	buf := slices.Grow((*bp)[:0], size)
	defer func() { *bp = buf[:0] }()
	buf = append(buf, b...)
	buf = append(buf, 0, 'a')
	buf = binary.AppendUvarint(buf, uint64(len(a.Terms)))
	for _, t := range a.Terms {
		buf = appendList(buf, t.Patients)
		buf = appendList(buf, t.Types)
		cl, err := json.Marshal(t.Clauses)
		if err != nil {
			return "", false
		}
		buf = binary.AppendUvarint(buf, uint64(len(cl)))
		buf = append(buf, cl...)
	}
	return cacheKey(op, buf), true
}

// keyBufs are accessKey's buffers, reused: a payer's restriction is tens
// of KiB to hash on every read.
var keyBufs = sync.Pool{New: func() any { return new([]byte) }}

// appendList appends l to b: its length, then each string's length and
// bytes.
func appendList(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// usable reports whether a call may use the cache: the Store is open and the
// cache clean, or made clean now by an epoch Bump.
func (s *Store) usable(ctx context.Context) bool {
	if s.closed.Load() {
		return false
	}
	return s.failed.Load() == s.cleared.Load() || s.recover(ctx)
}

// recover bumps the epoch, which makes every entry filled before it
// unreachable, including those older than the writes whose Bump failed, and
// then counts the failures seen before it began as cleared. Concurrent
// callers do not queue behind it: they bypass the cache meanwhile.
func (s *Store) recover(ctx context.Context) bool {
	if !s.recovering.TryLock() {
		return false
	}
	defer s.recovering.Unlock()
	// Only recover moves cleared, under recovering: it never goes back.
	failed := s.failed.Load()
	if failed == s.cleared.Load() {
		return true // another caller recovered
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.c.Bump(ctx, []string{epoch}); err != nil {
		s.opts.Observer.error("bump")
		return false
	}
	s.cleared.Store(failed)
	return s.failed.Load() == failed
}

// through answers op from the cache, or from load and then fills the cache.
// Only successful answers are cached. Every cache failure falls back to
// load: the cache is an optimization, never a dependency of reads.
//
// With a near cache, a near entry whose stamp values are current (read from
// the shared cache after the call began, store.NearCache.Stamps, or known
// without a round trip, store.Watched, CACHE-3) answers alone; share copies what a caller could modify (the slices of an answer)
// of a value the near cache keeps. Reads by id (nearOnly) are kept in the
// near cache only: a Redis entry costs the round trip a PostgreSQL
// primary-key read costs, so on a near miss the store answers. A read by
// id is filled on its first miss while the watch vouches for its stamps
// (no round trip, CACHE-4, PERF-ST-20), else only on its second miss
// (doorkeeper, near.go), so reads that never repeat do not pay a stamp
// read.
func through[T any](ctx context.Context, s *Store, op, key string, stamps []string,
	enc func([]byte, T) []byte, dec func([]byte) (T, error), share func(T) T, load func(context.Context) (T, error),
) (T, error) {
	if s.near != nil {
		// The near cache keeps what the store answers, a miss's page
		// too: nothing below may lend it (store.Lease; SQLite lends a
		// page's bodies, docs/design/security.md PERF-ST-21), nor does
		// this store (below, lease is nil with a near cache).
		ctx = store.WithoutLease(ctx)
	}
	if !s.usable(ctx) {
		return load(ctx)
	}
	if s.near != nil {
		have, haveOK := s.near.get(key)
		nearOnly := op == "read"
		if nearOnly && !haveOK {
			if s.watched != nil {
				// The watch vouches for the stamps without a round trip
				// (CACHE-3, CACHE-4): a first miss is filled at the values
				// it vouched for before the store read began, as a second
				// miss is (PERF-ST-20). The doorkeeper only spares a miss
				// the stamp read, which here costs none, and withheld
				// every read's first repeat from the near cache.
				if at, ok := s.watched.Known(stamps); ok {
					return fillNear(ctx, s, op, key, at, enc, share, load)
				}
			}
			if !s.door.seen(key) {
				// A first miss: the store answers alone, nothing is filled.
				s.opts.Observer.miss(op)
				return load(ctx)
			}
		}
		if haveOK && s.knownAt != nil && s.knownAt(stamps, have.at) {
			// The watch vouches that the entry's stamps are current: a
			// hit, with nothing encoded or allocated to check it
			// (CACHE-5); the same answer as stampsNow's below.
			if v, ok := have.v.(T); ok {
				s.opts.Observer.hit(op)
				return share(v), nil
			}
		}
		if haveOK || nearOnly {
			at, err := s.stampsNow(ctx, stamps)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					s.opts.Observer.error(op)
				}
				return load(ctx)
			case haveOK && at == have.at:
				if v, ok := have.v.(T); ok {
					s.opts.Observer.hit(op)
					return share(v), nil
				}
				s.near.drop(key)
			}
			if nearOnly {
				return fillNear(ctx, s, op, key, at, enc, share, load)
			}
			// A near entry of older stamps: the shared cache may hold a
			// current one.
		}
	}
	var (
		at    string
		plain []byte
		hit   bool
		err   error
		uerr  error
		exp   time.Time // of the in-process cache's entry
	)
	pages := op == "everything" || op == "search"
	// A page is lent (lend.go, PERF-ST-18) when the caller holds a Lease
	// and nothing here would keep the answer: there is no near cache, and
	// the page does not go to the hot table (a large page asked for again
	// soon does, expanded into memory of its own as before).
	var lease *store.Lease
	if pages && s.near == nil {
		lease = store.LeaseFrom(ctx)
	}
	lent := false
	expand := func(b []byte) (out []byte, err error) {
		if lease == nil || (s.mem != nil && len(b) >= 2 && b[1]&flagCompressed != 0 && s.hotCandidate(key, b)) {
			if s.mem != nil {
				return unpackCopy(b)
			}
			return unpack(b)
		}
		out, lent, err = unpackLent(b, lease)
		return out, err
	}
	if s.mem != nil {
		at = s.mem.At(stamps)
		if pages {
			if v, ok := s.hot.get(key, at); ok {
				if v, ok := v.(T); ok {
					s.opts.Observer.hit(op)
					return share(v), nil
				}
			}
		}
		// The in-process cache's values live outside the Go heap
		// (store/memory, PERF-ST-9): expanded (or copied) from its ring
		// under its lock, never shared.
		if lease == nil {
			plain, exp, hit, uerr = s.mem.ExpandAt(key, at, unpackCopy)
		} else {
			plain, exp, hit, uerr = s.mem.ExpandAt(key, at, expand)
		}
	} else {
		var val []byte
		cctx, cancel := s.bounded(ctx)
		at, val, hit, err = s.c.Lookup(cctx, key, stamps)
		cancel()
		if hit {
			if lease == nil {
				plain, uerr = unpack(val)
			} else {
				plain, uerr = expand(val)
			}
		}
	}
	switch {
	case err != nil:
		if ctx.Err() == nil { // not the caller giving up
			s.opts.Observer.error(op)
		}
		return load(ctx)
	case hit:
		var v T
		err := uerr
		if err == nil {
			v, err = dec(plain)
		}
		if err == nil {
			s.opts.Observer.hit(op)
			if pages && s.mem != nil && len(plain) >= hotMin && !lent {
				s.hot.put(key, at, exp, v, len(plain))
				return share(v), nil
			}
			if s.near != nil {
				s.near.put(key, at, v, len(plain))
				return share(v), nil
			}
			return v, nil
		}
		// A corrupt entry is a miss; the Fill below replaces it.
		s.opts.Observer.error(op)
	default:
		s.opts.Observer.miss(op)
	}
	// Concurrent misses of the same answer at the same stamp values share
	// one store load (flight.go, docs/design/security.md CACHE-7); the
	// load's owner fills the cache.
	v, err, own := loadShared(ctx, s, key, at, share, load)
	if err != nil || !own {
		return v, err
	}
	// Waiters may be copying v (share) now: when it was shared, the
	// caller gets its own copy too, never v itself.
	mine := func(v T) T {
		if store.LeaseFrom(ctx) == nil {
			return share(v)
		}
		return v
	}
	// A Bump that failed meanwhile makes the cache dirty; filling would be
	// harmless (at predates the epoch Bump to come) but pointless.
	if s.failed.Load() != s.cleared.Load() {
		return mine(v), nil
	}
	// The value is encoded and compressed in pooled scratch buffers: the
	// cache copies what it keeps (store.Cache.Fill), so a miss allocates
	// no copies of its answer for the cache (PERF-ST-11).
	pb, cb := getScratch(), getScratch()
	plain = enc((*pb)[:0], v)
	packed := packTo((*cb)[:0], plain)
	cctx, cancel := s.bounded(ctx)
	ferr := s.c.Fill(cctx, key, at, packed, s.opts.TTL)
	cancel()
	n := len(plain)
	putScratch(pb, plain)
	if len(plain) >= compressAt { // else packed is plain, not in *cb
		putScratch(cb, packed)
	} else {
		scratch.Put(cb)
	}
	if ferr != nil && ctx.Err() == nil {
		s.opts.Observer.error(op)
	}
	if s.near != nil {
		s.near.put(key, at, v, n)
		return share(v), nil
	}
	return mine(v), nil
}

// fillNear answers a near miss of a read by id from the store and keeps
// the answer in the near cache under at, the stamps' values read before
// the store read began: a write that bumps them after that read leaves
// the entry unreachable (CACHE-1). Nothing is filled when the load fails
// or the cache turned dirty meanwhile.
func fillNear[T any](ctx context.Context, s *Store, op, key, at string,
	enc func([]byte, T) []byte, share func(T) T, load func(context.Context) (T, error),
) (T, error) {
	s.opts.Observer.miss(op)
	v, err := load(ctx)
	if err != nil || s.failed.Load() != s.cleared.Load() {
		return v, err
	}
	s.near.put(key, at, v, nearSize(v, enc))
	return share(v), nil
}

// scratch holds the buffers a fill encodes and compresses an answer in
// (PERF-ST-11): a 500-resource $everything page is about 650 KB encoded
// and was, on every miss, that plus up to as much again in growth
// copies and the compressor's 760 KB of output, all garbage as soon as
// the cache had copied its 100 KB. Buffers above maxScratch (a rare
// answer of several MB) are left to the collector.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 4 << 20

func getScratch() *[]byte { return scratch.Get().(*[]byte) }

// putScratch returns bp to the pool holding b's memory (b was built in
// *bp and may have grown out of it).
func putScratch(bp *[]byte, b []byte) {
	if cap(b) > maxScratch {
		return
	}
	if cap(b) > cap(*bp) {
		*bp = b[:0]
	}
	scratch.Put(bp)
}

// stampsNow returns the current values of stamps for the near cache: from
// the watch's mirror when it vouches for them (no round trip, CACHE-3),
// else read from the shared cache.
func (s *Store) stampsNow(ctx context.Context, stamps []string) (string, error) {
	if s.watched != nil {
		if at, ok := s.watched.Known(stamps); ok {
			return at, nil
		}
	}
	cctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.nc.Stamps(cctx, stamps)
}

// nearSize is what a value kept in the near cache only is charged: for a
// resource, its body and fields (about its encoded size, without encoding
// it: a read by id filled on its second miss would otherwise copy its
// body just to be measured); else its encoded size.
func nearSize[T any](v T, enc func([]byte, T) []byte) int {
	if r, ok := any(v).(store.Resource); ok {
		return len(r.Body) + len(r.Type) + len(r.ID) + len(r.Patient) + 32
	}
	bp := getScratch()
	b := enc((*bp)[:0], v)
	n := len(b)
	putScratch(bp, b)
	return n
}

// versionsKey is the key TypeVersions looks up: never filled, so the Lookup
// only reads the stamps.
const versionsKey = "versions"

// TypeVersions implements store.TypeVersioner: the current values of the
// epoch and of the types' "t:" stamps, which every Apply writing a resource
// of one of the types bumps before it returns (on the shared cache, so on
// every replica). Not usable when the cache is dirty or does not answer.
func (s *Store) TypeVersions(ctx context.Context, types []string) (string, bool) {
	if !s.usable(ctx) {
		return "", false
	}
	stamps := make([]string, 1, len(types)+1)
	stamps[0] = epoch
	for _, t := range types {
		stamps = append(stamps, typeStamp(t))
	}
	var (
		at  string
		err error
	)
	if s.nc != nil {
		at, err = s.stampsNow(ctx, stamps) // shares a round trip with concurrent reads, or none
	} else {
		cctx, cancel := s.bounded(ctx)
		at, _, _, err = s.c.Lookup(cctx, versionsKey, stamps)
		cancel()
	}
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Observer.error("versions")
		}
		return "", false
	}
	// A Bump that failed meanwhile may have left a type's stamp behind its
	// writes.
	if s.failed.Load() != s.cleared.Load() {
		return "", false
	}
	return at, true
}

// same shares a value with nothing a caller could modify in place (a
// Resource's Body is read-only by contract).
func same[T any](v T) T { return v }

func shareSearch(r store.SearchResult) store.SearchResult {
	r.Resources = slices.Clone(r.Resources)
	return r
}

func sharePage(p page) page {
	p.rs = slices.Clone(p.rs)
	return p
}

// Read implements store.Store. A deleted or unknown resource is an error,
// never cached.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	ref := typ + "/" + id
	return through(ctx, s, "read", cacheKey("read", []byte(ref)), []string{epoch, s.bucket(typ, id)},
		encResource, decodeResource, same[store.Resource],
		func(ctx context.Context) (store.Resource, error) { return s.st.Read(ctx, typ, id) })
}

// Search implements store.Store. The key is the whole query, including
// what access control restricted it to (Query.Patients, Query.Access), so
// an answer is only ever served to the audience it was computed for
// (docs/design/security.md PRIV-3); hashed, it holds no PHI (PRIV-6).
func (s *Store) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	load := func(ctx context.Context) (store.SearchResult, error) { return s.st.Search(ctx, q) }
	rest := q
	rest.Access = nil // in the key through accessKey's own encoding
	key, ok := accessKey("search", rest, q.Access)
	if !ok {
		return load(ctx)
	}
	return through(ctx, s, "search", key, searchStamps(&q), encSearch, decodeSearch, shareSearch, load)
}

// Everything implements store.Store. The key is the whole query, its
// access restriction (EverythingQuery.Access) included, as for Search.
func (s *Store) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	load := func(ctx context.Context) (page, error) {
		rs, total, err := s.st.Everything(ctx, q)
		return page{rs, total}, err
	}
	rest := q
	rest.Access = nil // in the key through accessKey's own encoding
	key, ok := accessKey("everything", rest, q.Access)
	if !ok {
		p, err := load(ctx)
		return p.rs, p.total, err
	}
	stamps := []string{epoch, moved, everythingStamp(compartment(q.Patient))}
	p, err := through(ctx, s, "everything", key, stamps, encPage, decodePage, sharePage, load)
	return p.rs, p.total, err
}

// GetMany implements store.Store. Its answer depends on the keys' resources
// only, so it is under their buckets, not a type's stamp.
func (s *Store) GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error) {
	load := func(ctx context.Context) ([]store.Resource, error) { return s.st.GetMany(ctx, keys) }
	key, ok := jsonKey("getmany", keys)
	if !ok {
		return load(ctx)
	}
	return through(ctx, s, "getmany", key, s.keyStamps(keys), encResources, decodeResources, slices.Clone[[]store.Resource], load)
}

// Refs implements store.Store. References are index rows of the from
// resources, written with them: their buckets cover the answer.
func (s *Store) Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	load := func(ctx context.Context) ([]store.Ref, error) { return s.st.Refs(ctx, from, params) }
	key, ok := jsonKey("refs", struct {
		From   []store.Key
		Params []string
	}{from, params})
	if !ok {
		return load(ctx)
	}
	return through(ctx, s, "refs", key, s.keyStamps(from), encRefs, decodeRefs, slices.Clone[[]store.Ref], load)
}

// Apply writes through the inner store, then bumps the stamps of what it
// wrote (writeStamps). It bumps even when Apply failed, since a batch may be
// partly written (store.BatchError), and when nothing changed, since this
// may be the retry of an Apply whose Bump failed. A failed Bump is retried
// with backoff for up to bumpBudget. When it still fails, reads bypass the
// cache until an epoch Bump succeeds, and Apply returns an error marked
// store.ErrUnavailable: a *store.StaleCacheError (joined with the inner
// *store.BatchError, if any) when the inner Apply succeeded, so the results
// stay valid and say what was written; joined with the inner error
// otherwise (docs/design/security.md IN-6).
func (s *Store) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	s.usable(ctx) // when dirty, try to clean up first
	res, err := s.st.Apply(ctx, records)
	if len(records) == 0 {
		return res, err
	}
	// The write has happened: invalidate even if the caller gives up now.
	wctx := context.WithoutCancel(ctx)
	// writeStamps reads previous versions (bounded like one bump; it
	// falls back to dropping every compartment answer when it cannot).
	sctx, cancel := context.WithTimeout(wctx, bumpTimeout)
	stamps := s.writeStamps(sctx, records, res)
	cancel()
	berr := s.bump(wctx, stamps)
	if berr == nil {
		return res, err
	}
	s.failed.Add(1)
	s.opts.Observer.error("bump")
	berr = fmt.Errorf("cached: invalidate after apply: %w: %w", store.ErrUnavailable, berr)
	var be *store.BatchError
	switch {
	case err == nil:
		return res, &store.StaleCacheError{Err: berr}
	case errors.As(err, &be):
		return res, errors.Join(err, &store.StaleCacheError{Err: berr})
	}
	return res, errors.Join(err, berr)
}

// bump bumps stamps, each attempt bounded by bumpTimeout, retried with
// backoff while bumpBudget lasts. It returns the last attempt's error.
func (s *Store) bump(ctx context.Context, stamps []string) error {
	start := time.Now()
	wait := bumpBackoff
	for {
		bctx, cancel := context.WithTimeout(ctx, bumpTimeout)
		err := s.c.Bump(bctx, stamps)
		cancel()
		if err == nil || time.Since(start)+wait >= bumpBudget {
			return err
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// writeStamps returns the stamps of what records and their results wrote,
// once each (see the package documentation): for every resource of the
// records and of the results (a deletion appears only in the results), its
// "r:" bucket and its type's "t:" stamp; for each compartment a resource is
// in now (the records' Patient) or was in before an update or deletion
// (the Patient of its previous version), the "p:" stamp and the "q:" stamp
// of the resource's type. When a previous compartment cannot be known it
// bumps "m", which drops every compartment entry.
func (s *Store) writeStamps(ctx context.Context, records []store.RecordWrite, results []store.WriteResult) []string {
	var stamps []string
	seen := map[string]bool{}
	add := func(st string) {
		if !seen[st] {
			seen[st] = true
			stamps = append(stamps, st)
		}
	}
	in := func(typ, patient string) {
		if patient == "" {
			return // in no compartment: no compartment answer holds it
		}
		b := compartment(patient)
		add(everythingStamp(b))
		add(searchCompartmentStamp(typ, b))
	}
	for _, r := range records {
		for _, w := range r.Resources {
			add(s.bucket(w.Type, w.ID))
			add(typeStamp(w.Type))
			in(w.Type, w.Patient)
		}
	}
	var previous []store.ResourceResult
	for _, r := range results {
		for _, w := range r.Resources {
			add(s.bucket(w.Type, w.ID))
			add(typeStamp(w.Type))
			if w.Outcome == store.Updated || w.Outcome == store.Deleted {
				previous = append(previous, w)
			}
		}
	}
	if len(previous) > maxPrevious {
		add(moved)
		return stamps
	}
	// Versions are numbered 1, 2, ...: the one before an update or a
	// deletion is the resource as it was, live, with its compartment.
	for _, w := range previous {
		if w.Version < 2 {
			add(moved)
			continue
		}
		prev, err := s.st.VRead(ctx, w.Type, w.ID, w.Version-1)
		if err != nil || prev.Deleted {
			add(moved)
			continue
		}
		in(w.Type, prev.Patient)
	}
	return stamps
}

// VRead passes through: versions are immutable and so cacheable forever, but
// vread is rare in FHIR clients and not worth the cache space.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	return s.st.VRead(ctx, typ, id, version)
}

// History passes through: rare (audits, sync tools) and paged.
func (s *Store) History(ctx context.Context, typ, id string, count, offset int) ([]store.Resource, int, error) {
	return s.st.History(ctx, typ, id, count, offset)
}

// SourceRecords passes through: ingest reads them to compare hashes and
// needs the stored state, not a cached one.
func (s *Store) SourceRecords(ctx context.Context, keys []store.RecordKey) (map[store.RecordKey][]byte, error) {
	return s.st.SourceRecords(ctx, keys)
}

// Ping checks the inner store only: the cache failing open, it is not
// needed to serve.
func (s *Store) Ping(ctx context.Context) error { return s.st.Ping(ctx) }

// Close closes the inner store (not the cache, which the caller owns and may
// share). Later reads go to the closed store and fail as it does.
func (s *Store) Close() error {
	s.closed.Store(true)
	return s.st.Close()
}

// Invalidate bumps the epoch: every entry filled before it is never found
// again, on every replica. For writes the decorator cannot see (another
// process writing the same SQLite file, definitions written at start-up).
// When the Bump fails the Store turns dirty, exactly as after a failed
// Apply: this replica bypasses the cache and bumps the epoch as soon as the
// cache answers again; the error says so.
func (s *Store) Invalidate(ctx context.Context) error {
	if err := s.c.Bump(ctx, []string{epoch}); err != nil {
		s.failed.Add(1)
		s.opts.Observer.error("bump")
		return fmt.Errorf("cached: invalidate: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}
