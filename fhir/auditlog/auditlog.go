// Package auditlog writes the FHIR API's audit Events to a store.AuditStore
// in the background: Writer implements fhir.Auditor with a bounded queue
// drained by one goroutine that turns each Event into store.AuditRecords (the
// compact rows fhir.AuditEventJSON renders as R4 AuditEvents when the trail
// is read) and appends them in batches.
//
// One AuditEvent is stored per patient an Event touched (IHE Basic Audit Log
// Patterns: a query returning several patients' data is recorded once per
// patient), so "who accessed this patient's data" is a lookup on
// store.AuditRecord.Patient; an Event that touched no patient (a denied or
// empty request) is stored once without one.
//
// Records go to the store in group commits: one transaction per batch of up
// to Options.Batch records from many requests (or what arrived within
// Options.FlushEvery), so a read costs no transaction of its own.
//
// The audit trail fails closed (docs/design/security.md AUD-ARCH-2): the
// Writer is a fhir.AuditGate whose Admit refuses new audited requests (503,
// before anything is read) while the store is failing (from the first failed
// append until one succeeds) or the queue is at least 90 % full, so patient
// data is not answered while its AuditEvents cannot be kept. The requests
// already admitted fit in the remaining tenth; should the queue still be
// full, Record blocks the request's goroutine (its response is already
// written) for at most Options.Block, then counts the event in Dropped and
// logs a warning with counts only, and Close reports the loss. A store error
// retries the batch with exponential backoff (logged, no PHI) while events
// keep queueing; Close flushes what is queued.
package auditlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/store"
)

// Defaults for Options. DefaultBatch: a busy gateway commits about five
// times a second (FlushEvery) rather than once per 500 events; a commit
// costs more than the rows it adds (and, before the SQLite trail had a file
// of its own, cost every reader of the store its page cache:
// docs/design/security.md AUD-ARCH-5).
const (
	DefaultBuffer     = 10_000
	DefaultBatch      = 2_000
	DefaultFlushEvery = 200 * time.Millisecond
	DefaultBlock      = 50 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Options tune a Writer; zero values take the defaults.
type Options struct {
	// Buffer is the queue capacity in Events (DefaultBuffer).
	Buffer int
	// Batch is the most records appended in one transaction (DefaultBatch).
	Batch int
	// FlushEvery bounds how long a queued record waits for its batch to fill
	// (DefaultFlushEvery).
	FlushEvery time.Duration
	// Block is how long Record waits for room in a full queue before it
	// drops the Event (DefaultBlock).
	Block time.Duration
	// MaxBackoff caps the wait between retries of a failed append
	// (DefaultMaxBackoff; the first retry waits 100 ms).
	MaxBackoff time.Duration
	// Logger receives warnings (counts and error types only); nil uses
	// slog.Default().
	Logger *slog.Logger
	// NewID returns AuditEvent ids; nil uses UUIDv7s whose time is the
	// event's own millisecond (AuditEvent.recorded), the form the SQL
	// stores keep in 10 bytes (docs/design/security.md AUD-ARCH-1), and
	// for a request the gateway numbered, ids derived from its number
	// (derivedV7, AUD-ARCH-4). A NewID set is used for every event.
	NewID func() string
}

// Writer is a fhir.Auditor that queues Events and appends them to a
// store.AuditStore from one background goroutine. Safe for concurrent use.
type Writer struct {
	st     store.AuditStore
	opts   Options
	log    *slog.Logger
	newID  func(at time.Time) string
	derive bool // ids of requests the gateway numbered come from their number (derivedV7)

	mu     sync.RWMutex // guards closed against Record's send
	closed bool
	queue  chan fhir.Event
	// kick wakes the drain goroutine while it waits for its batch to
	// fill: Record sends (without blocking) once the queue holds need
	// Events, Close once it closed the queue. Between kicks Record hands
	// its Event over without waking the drain goroutine: a wake per read
	// (a goroutine switch, and often a thread woken from a futex) cost
	// more than the Event's share of its batch's commit
	// (docs/design/security.md AUD-ARCH-7).
	kick  chan struct{}
	need  atomic.Int64  // Events the waiting drain goroutine needs to fill its batch
	done  chan struct{} // closed when the drain goroutine returned
	abort chan struct{} // closed when Close gives up waiting
	once  sync.Once

	failing  atomic.Bool // the last append failed
	shut     atomic.Bool // Close was called (Admit's lock-free view of closed)
	dropped  atomic.Uint64
	lastWarn atomic.Int64 // unix nanos of the last drop warning
	written  atomic.Uint64
}

var (
	_ fhir.Auditor   = (*Writer)(nil)
	_ fhir.AuditGate = (*Writer)(nil)
)

// New starts a Writer on st. Close it to flush and stop.
func New(st store.AuditStore, opts Options) *Writer {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.Block <= 0 {
		opts.Block = DefaultBlock
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	w := &Writer{
		st:     st,
		opts:   opts,
		log:    opts.Logger,
		newID:  newV7At,
		derive: opts.NewID == nil,
		queue:  make(chan fhir.Event, opts.Buffer),
		kick:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		abort:  make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if opts.NewID != nil {
		w.newID = func(time.Time) string { return opts.NewID() }
	}
	w.need.Store(math.MaxInt64)
	go w.run()
	return w
}

// Record queues ev. When the queue is full it waits up to Options.Block for
// room, then drops ev, counts it (Dropped) and logs a warning (at most one
// per second, with counts only). The request context is not consulted: an
// access is audited even when its client went away. Events recorded after
// Close are dropped the same way.
func (w *Writer) Record(_ context.Context, ev fhir.Event) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop("audit writer closed")
		return
	}
	select {
	case w.queue <- ev:
		w.nudge()
		return
	default:
	}
	t := time.NewTimer(w.opts.Block)
	defer t.Stop()
	select {
	case w.queue <- ev:
		w.nudge()
	case <-t.C:
		w.drop("audit queue full")
	}
}

// nudge wakes the drain goroutine once the queue holds what its batch
// needs (an atomic load and a length on the common path).
func (w *Writer) nudge() {
	if int64(len(w.queue)) >= w.need.Load() {
		select {
		case w.kick <- struct{}{}:
		default: // a kick is already pending
		}
	}
}

// errAuditBacklog and errAuditStore are Admit's refusals.
var (
	errAuditBacklog = fmt.Errorf("auditlog: audit queue nearly full")
	errAuditStore   = fmt.Errorf("auditlog: audit store failing")
)

// Admit implements fhir.AuditGate: it refuses while the store is failing
// or the queue is at least 90 % full, and after Close.
func (w *Writer) Admit() error {
	switch {
	case w.failing.Load():
		return errAuditStore
	case len(w.queue) >= cap(w.queue)-cap(w.queue)/10:
		return errAuditBacklog
	}
	if w.shut.Load() {
		return errAuditBacklog
	}
	return nil
}

// drop counts one lost Event and warns, rate-limited to one line a second.
func (w *Writer) drop(msg string) {
	n := w.dropped.Add(1)
	now := time.Now().UnixNano()
	last := w.lastWarn.Load()
	if now-last < int64(time.Second) || !w.lastWarn.CompareAndSwap(last, now) {
		return
	}
	w.log.Warn(msg+": audit events dropped", "dropped_total", n, "queued", len(w.queue))
}

// Dropped returns how many audit events were lost: one per Event dropped on
// a full queue or after Close, one per AuditEvent record that failed to
// serialize or was left unwritten when Close gave up.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Written returns how many AuditEvent records were appended.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Close stops accepting Events and waits until everything queued is written
// or ctx is done; then a failing append stops retrying, its records and the
// rest of the queue are counted as dropped. It returns an error when any
// event was dropped during the Writer's life, so shutdown reports the loss.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.shut.Store(true)
		close(w.queue)
		w.mu.Unlock()
		select {
		case w.kick <- struct{}{}: // flush now, not at FlushEvery
		default:
		}
	})
	select {
	case <-w.done:
	case <-ctx.Done():
		select {
		case <-w.abort:
		default:
			close(w.abort)
		}
		<-w.done
	}
	if n := w.Dropped(); n > 0 {
		return fmt.Errorf("auditlog: %d audit events were not stored", n)
	}
	return nil
}

// run drains the queue: it batches records (up to Options.Batch, or what
// arrived within Options.FlushEvery of the batch's first record) and appends
// each batch, retrying failures. Only the first Event of a batch wakes it;
// then it waits for the batch's deadline or a kick (the queue holds enough
// to fill the batch, or Close), and takes what is queued in one go.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]store.AuditRecord, 0, w.opts.Batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(batch) > 0 {
			w.append(batch)
			batch = batch[:0]
		}
	}
	for {
		// A blocking receive is woken by the send itself: no kicks.
		w.need.Store(math.MaxInt64)
		ev, ok := <-w.queue
		if !ok {
			return
		}
		timer.Reset(w.opts.FlushEvery)
		batch = w.records(batch, ev)
	fill:
		for len(batch) < w.opts.Batch {
			// Take what is queued without waiting.
			select {
			case ev, ok := <-w.queue:
				if !ok {
					flush()
					return
				}
				batch = w.records(batch, ev)
				continue
			default:
			}
			w.need.Store(int64(w.opts.Batch - len(batch)))
			if len(w.queue) > 0 {
				continue // queued between the last take and need's store
			}
			select {
			case <-w.kick:
			case <-timer.C:
				break fill
			}
		}
		w.need.Store(math.MaxInt64)
		flush()
	}
}

// records appends ev's AuditRecords (one per patient, or one without a
// patient) to batch. They are compact rows: the AuditEvent JSON is rendered
// when the trail is read (fhir.AuditEventJSON), off the request path.
func (w *Writer) records(batch []store.AuditRecord, ev fhir.Event) []store.AuditRecord {
	var r [12]byte
	derive := w.derive && ev.RequestIDRandom && len(ev.Patients) <= 256 && len(ev.RequestID) == 24
	if derive {
		_, err := hex.Decode(r[:], []byte(ev.RequestID))
		derive = err == nil
	}
	id := func(k int) string {
		if derive {
			return derivedV7(ev.Time, r, byte(k))
		}
		return w.newID(ev.Time)
	}
	if len(ev.Patients) == 0 {
		return append(batch, ev.AuditRecord(id(0), ""))
	}
	for k, p := range ev.Patients {
		batch = append(batch, ev.AuditRecord(id(k), p))
	}
	return batch
}

// derivedV7 is the id of the k-th AuditEvent (k: the patient's index) of
// a request the gateway numbered with the 12 random bytes r: a UUIDv7 at
// at's millisecond whose 74 other bits are r's first 10 bytes (less the
// version and variant bits), the last XORed with k. r is unique (the
// gateway's crypto/rand), so the ids are; and the SQL stores, finding the
// request id in the key, keep only its 4 other bytes
// (docs/design/security.md AUD-ARCH-4; store/internal/sqlcore
// auditDerived).
func derivedV7(at time.Time, r [12]byte, k byte) string {
	var u uuid.UUID
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	copy(u[6:], r[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	u[15] ^= k
	return u.String()
}

// append writes one batch, retrying with exponential backoff until it is
// stored or Close gives up (abort).
func (w *Writer) append(batch []store.AuditRecord) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.st.AppendAudit(ctx, batch)
		cancel()
		if err == nil {
			w.failing.Store(false)
			w.written.Add(uint64(len(batch)))
			if attempt > 1 {
				w.log.Info("audit store append succeeded after retries", "attempt", attempt, "records", len(batch))
			}
			return
		}
		w.failing.Store(true)
		// Store errors name SQL, tables and constraints, never the bound
		// values (the records' ids are not in them).
		w.log.Warn("audit store append failed; retrying", "attempt", attempt, "records", len(batch),
			"retry_in", backoff.String(), "err", err.Error())
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w.abort:
			t.Stop()
			n := w.dropped.Add(uint64(len(batch)))
			w.log.Error("audit writer closing: unwritten audit events dropped", "records", len(batch), "dropped_total", n)
			return
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

// newV7At returns a time-ordered UUID (RFC 9562 version 7) whose time is
// at's millisecond, the event's AuditEvent.recorded: consecutive rows land
// at the end of the trail's key, and the SQL stores keep only the 10 bytes
// after the time, which the row's recorded column already holds
// (docs/design/security.md AUD-ARCH-1). The other 74 bits are random.
func newV7At(at time.Time) string {
	var u uuid.UUID
	if _, err := rand.Read(u[6:]); err != nil {
		return uuid.NewString() // crypto/rand does not fail; version 4 would panic too
	}
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}
