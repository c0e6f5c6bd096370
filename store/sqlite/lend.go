package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"

	"github.com/ketabridge/ketabridge/store"
)

// Lent bodies (docs/design/security.md PERF-ST-21). The driver
// (modernc.org/sqlite, rows.Next) copies every BLOB it returns into a new
// slice of its own: a 500-resource $everything page that misses the read
// cache was about 650 KB of new memory per request, dropped as soon as the
// Bundle was written, and most of what everything-default left to the
// collector once cached pages were lent (PERF-ST-17, PERF-ST-18). When the
// caller's context carries a store.Lease, loadBodies reads the bodies
// through the SQL function lendBodyFunc instead, which the driver hands a
// view of SQLite's own memory (FunctionImpl.VolatileArgs) and which copies
// each body, before the next row, into chunks pooled here and held by the
// Lease; they return to the pool when the caller releases it, after its
// response is written (store.Lease's contract: nothing keeps a lent body
// past Release; store/cached drops the Lease where its near cache would
// keep a page). Without a Lease the bodies are read as before.

// lendBodyFunc is the SQL function lendBodyFunc(sink, hid, body): it copies
// body into the sink registered under the integer sink, for row hid, and
// returns NULL.
const lendBodyFunc = "kb_lend_body"

// lentChunkSize is the size of a pooled chunk of bodies; a body larger than
// lentChunkSize/4 gets memory of its own (as without a Lease), so a chunk
// wastes at most a quarter of itself at its end.
const lentChunkSize = 256 << 10

var lentChunks = sync.Pool{New: func() any {
	b := make([]byte, 0, lentChunkSize)
	return &b
}}

// sinks maps the sink numbers of the loadBodies calls in progress to their
// sinks; the SQL function finds its sink by the number bound to the query.
var (
	sinks    sync.Map // int64 -> *bodySink
	sinkSeqs atomic.Int64
)

func init() {
	sqlite.MustRegisterFunction(lendBodyFunc, &sqlite.FunctionImpl{
		NArgs:        3,
		VolatileArgs: true, // body is SQLite's memory: copied below, never kept
		Scalar:       lendBody,
	})
}

// lendBody is lendBodyFunc. body is valid only during the call (a view of
// SQLite's memory): it is copied into the sink's chunk before returning.
func lendBody(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	n, _ := args[0].(int64)
	v, ok := sinks.Load(n)
	if !ok {
		return nil, errors.New("store: sqlite: no body sink")
	}
	k := v.(*bodySink)
	hid, ok := args[1].(int64)
	if !ok {
		return nil, errors.New("store: sqlite: body sink: hid is not an integer")
	}
	switch b := args[2].(type) {
	case nil:
		k.add(hid, nil)
	case []byte:
		k.add(hid, b)
	case string:
		k.add(hid, []byte(b)) // CAST(body AS BLOB) makes this unreachable
	default:
		return nil, fmt.Errorf("store: sqlite: body sink: body is %T", args[2])
	}
	return nil, nil
}

// bodySink receives the bodies of one loadBodies call under a Lease. It is
// used by one goroutine at a time: the SQL function runs inside rows.Next
// of the caller's query.
type bodySink struct {
	n      int64
	lease  *store.Lease
	cur    []byte // the chunk being filled (len: used)
	hids   []int64
	bodies [][]byte
}

// newSink returns a registered sink for a loadBodies call under ctx's
// Lease, or nil when ctx carries none; close unregisters it.
func newSink(ctx context.Context) *bodySink {
	l := store.LeaseFrom(ctx)
	if l == nil {
		return nil
	}
	k := &bodySink{n: sinkSeqs.Add(1), lease: l}
	sinks.Store(k.n, k)
	return k
}

func (k *bodySink) close() { sinks.Delete(k.n) }

// reset forgets the rows received (not the chunk being filled).
func (k *bodySink) reset() {
	k.hids = k.hids[:0]
	clear(k.bodies)
	k.bodies = k.bodies[:0]
}

// add copies b, the body of row hid, into the sink: into its chunk, a new
// pooled one held by the Lease when it is full, or memory of its own when b
// is large or the Lease is already released. An empty body is nil, as the
// driver returns it.
func (k *bodySink) add(hid int64, b []byte) {
	var out []byte
	switch n := len(b); {
	case n == 0:
	case n > lentChunkSize/4:
		out = append([]byte(nil), b...)
	default:
		if cap(k.cur)-len(k.cur) < n {
			bp := lentChunks.Get().(*[]byte)
			// Held before it is written: once Hold has succeeded the chunk
			// returns to the pool at Release only.
			if k.lease.Hold(func() { *bp = (*bp)[:0]; lentChunks.Put(bp) }) {
				k.cur = (*bp)[:0]
			} else {
				k.cur = make([]byte, 0, lentChunkSize)
			}
		}
		start := len(k.cur)
		k.cur = append(k.cur, b...)
		// The capacity ends at the body, so nothing appends into the next.
		out = k.cur[start:len(k.cur):len(k.cur)]
	}
	k.hids = append(k.hids, hid)
	k.bodies = append(k.bodies, out)
}
