package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// fakeAudit is a store.AuditStore recording each appended batch. failures
// makes the next appends fail; gate, when set, holds every append until it
// is closed.
type fakeAudit struct {
	mu       sync.Mutex
	batches  [][]store.AuditRecord
	failures int
	attempts int
	gate     chan struct{}
}

func (f *fakeAudit) AppendAudit(ctx context.Context, rs []store.AuditRecord) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.failures != 0 {
		if f.failures > 0 {
			f.failures--
		}
		return errors.New("store: sqlite: append audit: database is locked")
	}
	f.batches = append(f.batches, append([]store.AuditRecord(nil), rs...))
	return nil
}

func (f *fakeAudit) ListAudit(context.Context, time.Time, int) ([]store.AuditRecord, error) {
	return nil, errors.New("not used")
}

func (f *fakeAudit) records() []store.AuditRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.AuditRecord
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

func (f *fakeAudit) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches {
		out = append(out, len(b))
	}
	return out
}

// syncBuffer is a log sink safe for the writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var t0 = time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)

// phiPatient is a patient id the logs must never contain.
const phiPatient = "patient-jane-doe-1980"

func event(i int, patients ...string) fhir.Event {
	return fhir.Event{
		Time: t0.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprintf("req-%d", i),
		Interaction: auth.InteractionRead, Type: "Observation", ID: fmt.Sprintf("o%d", i),
		Patients: patients, Status: 200, ClientID: "ehr-1",
	}
}

func newWriter(t *testing.T, st store.AuditStore, opts Options) (*Writer, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	w := New(st, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w, logs
}

func closeNow(t *testing.T, w *Writer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.Close(ctx)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRecordsPerPatient(t *testing.T) {
	st := &fakeAudit{}
	w, _ := newWriter(t, st, Options{FlushEvery: time.Hour})
	w.Record(context.Background(), event(1, "p1", "p2"))
	w.Record(context.Background(), event(2))
	if err := closeNow(t, w); err != nil {
		t.Fatal(err)
	}
	got := st.records()
	if len(got) != 3 {
		t.Fatalf("got %d records, want 3 (one per patient, one without)", len(got))
	}
	wantPatients := []string{"p1", "p2", ""}
	ids := map[string]bool{}
	for i, r := range got {
		t.Run(fmt.Sprintf("record %d", i), func(t *testing.T) {
			if r.Patient != wantPatients[i] || r.ClientID != "ehr-1" || r.ID == "" || ids[r.ID] {
				t.Errorf("record = %+v", r)
			}
			ids[r.ID] = true
			body, err := fhir.AuditEventJSON(r)
			if err != nil {
				t.Fatalf("AuditEventJSON: %v", err)
			}
			if issues := conformance.Validate(body); len(issues) != 0 {
				t.Errorf("invalid AuditEvent: %+v\n%s", issues, body)
			}
			if !bytes.Contains(body, []byte(`"id":"`+r.ID+`"`)) {
				t.Errorf("body does not carry id %s: %s", r.ID, body)
			}
			n := bytes.Count(body, []byte(`"reference":"Patient/`))
			if (r.Patient == "" && n != 0) || (r.Patient != "" && (n != 1 || !bytes.Contains(body, []byte(`"Patient/`+r.Patient+`"`)))) {
				t.Errorf("body names the wrong patients: %s", body)
			}
		})
	}
	if w.Written() != 3 || w.Dropped() != 0 {
		t.Errorf("written %d dropped %d", w.Written(), w.Dropped())
	}
}

// TestDefaultIDsAreTimeOrdered: without Options.NewID, ids are version-7
// UUIDs whose time is the event's own millisecond (the form the SQL stores
// keep compact: docs/design/security.md AUD-ARCH-1), so they sort in the
// order of the events' times.
func TestDefaultIDsAreTimeOrdered(t *testing.T) {
	st := &fakeAudit{}
	w, _ := newWriter(t, st, Options{FlushEvery: time.Hour})
	for i := range 50 {
		w.Record(context.Background(), event(i+1, "p1"))
	}
	if err := closeNow(t, w); err != nil {
		t.Fatal(err)
	}
	got := st.records()
	if len(got) != 50 {
		t.Fatalf("got %d records, want 50", len(got))
	}
	for i, r := range got {
		id, err := uuid.Parse(r.ID)
		if err != nil || id.Version() != 7 {
			t.Fatalf("record %d id %q: version %d, %v; want a version-7 UUID", i, r.ID, id.Version(), err)
		}
		if sec, nsec := id.Time().UnixTime(); time.Unix(sec, nsec).UnixMilli() != r.Recorded.UnixMilli() {
			t.Errorf("record %d id %s: time %v, want the event's %v", i, r.ID, time.Unix(sec, nsec).UTC(), r.Recorded)
		}
		if i > 0 && r.ID <= got[i-1].ID {
			t.Errorf("record %d id %s does not sort after %s", i, r.ID, got[i-1].ID)
		}
	}
}

func TestBatching(t *testing.T) {
	cases := []struct {
		name      string
		opts      Options
		events    int
		beforeEnd []int // batch sizes expected before Close
		afterEnd  []int
	}{
		{"full batches are appended at once", Options{Batch: 3, FlushEvery: time.Hour}, 7, []int{3, 3}, []int{3, 3, 1}},
		{"a partial batch waits for FlushEvery", Options{Batch: 100, FlushEvery: 20 * time.Millisecond}, 2, []int{2}, []int{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeAudit{}
			w, _ := newWriter(t, st, tc.opts)
			for i := range tc.events {
				w.Record(context.Background(), event(i, "p1"))
			}
			waitFor(t, "batches", func() bool { return len(st.sizes()) == len(tc.beforeEnd) })
			if got := fmt.Sprint(st.sizes()); got != fmt.Sprint(tc.beforeEnd) {
				t.Errorf("before Close: batches %s, want %v", got, tc.beforeEnd)
			}
			if err := closeNow(t, w); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(st.sizes()); got != fmt.Sprint(tc.afterEnd) {
				t.Errorf("after Close: batches %s, want %v", got, tc.afterEnd)
			}
		})
	}
}

// TestHandOffWakesOncePerBatch: once the drain goroutine holds a batch's
// first Event, later Events wait in the queue without waking it until they
// fill the batch (or FlushEvery ends it), so a read does not pay a
// goroutine switch for its AuditEvent. The queue's length shows it: the
// old drain goroutine, woken by every send, took each Event as it came.
func TestHandOffWakesOncePerBatch(t *testing.T) {
	st := &fakeAudit{}
	w, _ := newWriter(t, st, Options{Batch: 100, FlushEvery: time.Hour})
	ctx := context.Background()
	w.Record(ctx, event(0, "p1"))
	waitFor(t, "the writer to take the first event", func() bool { return len(w.queue) == 0 })
	for range 100 {
		runtime.Gosched() // let the drain goroutine reach its wait
	}
	for i := 1; i <= 50; i++ {
		w.Record(ctx, event(i, "p1"))
	}
	for range 100 {
		runtime.Gosched() // a drain goroutine woken by the sends would take them now
	}
	if n := len(w.queue); n != 50 {
		t.Errorf("%d of 50 events still queued: the drain goroutine was woken before its batch could fill", n)
	}
	if got := st.sizes(); len(got) != 0 {
		t.Fatalf("batches %v appended before the batch filled", got)
	}
	// The 99th queued event fills the batch: it wakes the drain goroutine,
	// which appends the 100 at once.
	for i := 51; i <= 99; i++ {
		w.Record(ctx, event(i, "p1"))
	}
	waitFor(t, "the full batch", func() bool { return len(st.sizes()) == 1 })
	if got := fmt.Sprint(st.sizes()); got != "[100]" {
		t.Errorf("batches %s, want [100]", got)
	}
	// Close flushes at once what is queued, not at FlushEvery.
	w.Record(ctx, event(100, "p1"))
	if err := closeNow(t, w); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(st.sizes()); got != "[100 1]" {
		t.Errorf("after Close: batches %s, want [100 1]", got)
	}
}

func TestFullQueueDrops(t *testing.T) {
	st := &fakeAudit{gate: make(chan struct{})}
	w, logs := newWriter(t, st, Options{Buffer: 1, Batch: 1, Block: 5 * time.Millisecond})
	ctx := context.Background()
	// The first event is taken by the drain goroutine, which blocks in the
	// store; the second fills the queue; the rest wait Block and drop.
	w.Record(ctx, event(0, phiPatient))
	waitFor(t, "the writer to take the first event", func() bool { return len(w.queue) == 0 })
	start := time.Now()
	for i := 1; i <= 4; i++ {
		w.Record(ctx, event(i, phiPatient))
	}
	if el := time.Since(start); el < 3*5*time.Millisecond {
		t.Errorf("Record returned after %v: it must wait Block before dropping", el)
	}
	if w.Dropped() != 3 {
		t.Errorf("Dropped = %d, want 3", w.Dropped())
	}
	close(st.gate)
	err := closeNow(t, w)
	if err == nil || !strings.Contains(err.Error(), "3 audit events") {
		t.Errorf("Close = %v, want the drop count", err)
	}
	if n := len(st.records()); n != 2 {
		t.Errorf("stored %d records, want 2", n)
	}
	l := logs.String()
	if !strings.Contains(l, "audit events dropped") || !strings.Contains(l, `"dropped_total":1`) {
		t.Errorf("no drop warning with a count:\n%s", l)
	}
	if strings.Count(l, "audit events dropped") != 1 {
		t.Errorf("drop warnings are not rate-limited:\n%s", l)
	}
	if strings.Contains(l, phiPatient) {
		t.Errorf("logs name a patient:\n%s", l)
	}
	w.Record(ctx, event(9, phiPatient))
	if w.Dropped() != 4 {
		t.Errorf("Record after Close: Dropped = %d, want 4", w.Dropped())
	}
}

func TestRetry(t *testing.T) {
	t.Run("a failing append is retried until stored", func(t *testing.T) {
		st := &fakeAudit{failures: 2}
		w, logs := newWriter(t, st, Options{FlushEvery: time.Millisecond, MaxBackoff: 150 * time.Millisecond})
		w.Record(context.Background(), event(1, phiPatient))
		waitFor(t, "the retried append", func() bool { return len(st.records()) == 1 })
		if err := closeNow(t, w); err != nil {
			t.Fatal(err)
		}
		l := logs.String()
		if strings.Count(l, "audit store append failed; retrying") != 2 || !strings.Contains(l, "succeeded after retries") {
			t.Errorf("retries not logged:\n%s", l)
		}
		if strings.Contains(l, phiPatient) {
			t.Errorf("logs name a patient:\n%s", l)
		}
		if w.Dropped() != 0 || w.Written() != 1 {
			t.Errorf("dropped %d written %d", w.Dropped(), w.Written())
		}
	})
	t.Run("Close gives up at its deadline", func(t *testing.T) {
		st := &fakeAudit{failures: -1}
		w, _ := newWriter(t, st, Options{FlushEvery: time.Hour})
		w.Record(context.Background(), event(1, "p1", "p2"))
		w.Record(context.Background(), event(2, "p3"))
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := w.Close(ctx)
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("Close took %v", el)
		}
		if err == nil || w.Dropped() != 3 {
			t.Errorf("Close = %v, Dropped = %d; want an error and 3", err, w.Dropped())
		}
		if st.attempts < 2 {
			t.Errorf("append attempted %d times, want retries", st.attempts)
		}
	})
}

// TestStoredRecordsRenderAsMarshalled writes Events through a Writer into
// SQLite, reads the rows back and pins that each renders (AuditEventJSON) to
// exactly MarshalAuditEvent of the original Event narrowed to its patient,
// valid R4.
func TestStoredRecordsRenderAsMarshalled(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	n := 0
	w, _ := newWriter(t, st, Options{FlushEvery: time.Hour, NewID: func() string { n++; return fmt.Sprintf("id-%03d", n) }})
	user := event(1, "p1", "p2")
	user.Time = user.Time.Add(456789 * time.Nanosecond) // sub-ms digits
	user.Interaction, user.Version = auth.InteractionVRead, "2"
	user.FHIRUser, user.Subject, user.Purpose = "Practitioner/dr1", "alice", "TREAT"
	denied := fhir.Event{Time: t0.Add(time.Second), Interaction: auth.InteractionSearch, Type: "Observation", Status: 401}
	events := []fhir.Event{user, denied}
	for _, ev := range events {
		w.Record(ctx, ev)
	}
	if err := closeNow(t, w); err != nil {
		t.Fatal(err)
	}
	type want struct {
		ev      fhir.Event
		patient string
	}
	wants := map[string]want{"id-001": {user, "p1"}, "id-002": {user, "p2"}, "id-003": {denied, ""}}
	recs, err := st.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(wants) {
		t.Fatalf("stored %d records, want %d", len(recs), len(wants))
	}
	for _, r := range recs {
		t.Run(r.ID, func(t *testing.T) {
			wt, ok := wants[r.ID]
			if !ok {
				t.Fatalf("unexpected record %+v", r)
			}
			one := wt.ev
			one.Patients = nil
			if wt.patient != "" {
				one.Patients = []string{wt.patient}
			}
			wantBody, err := fhir.MarshalAuditEvent(one, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fhir.AuditEventJSON(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantBody) {
				t.Errorf("rendered\n%s\nwant\n%s", got, wantBody)
			}
			if issues := conformance.Validate(got); len(issues) != 0 {
				t.Errorf("invalid AuditEvent: %+v\n%s", issues, got)
			}
		})
	}
}

// TestAdmitFailsClosed: the Writer refuses new audited requests while its
// store fails and admits them again once an append succeeds; it refuses
// while its queue is nearly full (docs/design/security.md AUD-ARCH-2).
func TestAdmitFailsClosed(t *testing.T) {
	t.Run("store failing", func(t *testing.T) {
		st := &fakeAudit{failures: 2}
		w, _ := newWriter(t, st, Options{Batch: 1, MaxBackoff: time.Millisecond})
		if err := w.Admit(); err != nil {
			t.Fatalf("a fresh writer refuses: %v", err)
		}
		w.Record(context.Background(), event(1, "p1"))
		refused := false
		for w.Written() == 0 { // until the third attempt succeeds
			if w.Admit() != nil {
				refused = true
			}
			runtime.Gosched()
		}
		st.mu.Lock()
		attempts := st.attempts
		st.mu.Unlock()
		if attempts != 3 {
			t.Fatalf("attempts = %d, want 3", attempts)
		}
		if !refused {
			// The failing flag is set before the first retry's wait and
			// cleared only by the success: Admit must have seen it unless
			// the loop never ran between them, which the 100 ms first
			// backoff rules out.
			t.Error("Admit admitted while the store was failing")
		}
		if err := w.Admit(); err != nil {
			t.Errorf("after a successful append Admit = %v", err)
		}
		if err := closeNow(t, w); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("queue nearly full", func(t *testing.T) {
		st := &fakeAudit{gate: make(chan struct{})}
		w, _ := newWriter(t, st, Options{Buffer: 20, Batch: 1})
		w.Record(context.Background(), event(1, "p1")) // taken by the drain, blocked in the store
		for len(w.queue) > 0 {
			runtime.Gosched()
		}
		for i := range 17 {
			w.Record(context.Background(), event(i+2, "p1"))
		}
		for len(w.queue) < 17 {
			runtime.Gosched()
		}
		if err := w.Admit(); err != nil {
			t.Errorf("17 of 20 queued: Admit = %v, want admitted", err)
		}
		w.Record(context.Background(), event(19, "p1"))
		if err := w.Admit(); err == nil {
			t.Error("18 of 20 queued: Admit admitted")
		}
		close(st.gate)
		if err := closeNow(t, w); err != nil {
			t.Fatal(err)
		}
		if w.Admit() == nil {
			t.Error("a closed writer admits")
		}
	})
}

// TestRequestDerivedIDs: the events of a request the gateway numbered get
// ids derived from its number (docs/design/security.md AUD-ARCH-4): version-7
// UUIDs at the event's millisecond, distinct per patient, and a request id
// a client chose (which may repeat) never gets them. Through SQLite every
// record reads back with its own id and request id.
func TestRequestDerivedIDs(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	w, _ := newWriter(t, st, Options{FlushEvery: time.Hour})
	numbered := event(1, "p1", "p2", "p3")
	numbered.RequestID, numbered.RequestIDRandom = "0123456789abcdef01234567", true
	// The same number sent by a client, in the same millisecond: its ids
	// must not be derived, or they would repeat the first request's.
	client := numbered
	client.RequestIDRandom = false
	again := event(1, "p1")
	again.RequestID, again.RequestIDRandom = "fedcba9876543210fedcba98", true
	for _, ev := range []fhir.Event{numbered, client, again} {
		w.Record(ctx, ev)
	}
	if err := closeNow(t, w); err != nil {
		t.Fatal(err)
	}
	recs, err := st.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 {
		t.Fatalf("stored %d records, want 7", len(recs))
	}
	seen := map[string]bool{}
	derived := 0
	for _, r := range recs {
		if seen[r.ID] {
			t.Errorf("id %s stored twice", r.ID)
		}
		seen[r.ID] = true
		id, err := uuid.Parse(r.ID)
		if err != nil || id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("id %q: %v; want a version-7 UUID", r.ID, err)
		}
		if sec, nsec := id.Time().UnixTime(); time.Unix(sec, nsec).UnixMilli() != r.Recorded.UnixMilli() {
			t.Errorf("id %s: not at the event's millisecond %v", r.ID, r.Recorded)
		}
		// A derived id carries the request id's bytes 3-8 unchanged.
		if strings.ReplaceAll(r.ID, "-", "")[18:30] == r.RequestID[6:18] {
			derived++
		}
		if r.RequestID != numbered.RequestID && r.RequestID != again.RequestID {
			t.Errorf("record %s: request id %q", r.ID, r.RequestID)
		}
	}
	if derived != 4 {
		t.Errorf("%d ids derived from their request id, want 4 (the gateway-numbered requests' records only)", derived)
	}
}

// openSQLite opens a SQLite store in t's temporary directory, closed when t
// ends (after the Writer newWriter registered).
func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ketabridge.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
