package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// freshStore opens a store on a fresh schema with clock (dropped at cleanup)
// and returns it with its URL.
func freshStore(t *testing.T, clock store.Clock) (*Store, string) {
	t.Helper()
	url := storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL")
	ctx := context.Background()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	u, drop, err := NewSchema(ctx, url, "kb_test_"+hex.EncodeToString(rnd[:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	u += "&application_name=kb_test_" + hex.EncodeToString(rnd[:])
	s, err := Open(ctx, u, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, u
}

// pauseFirst sets commitHook to stop the first batch reaching it until
// release is closed (paused is closed when it got there); later batches
// pass.
func pauseFirst(t *testing.T) (paused, release chan struct{}) {
	paused, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	commitHook = func() {
		if first.CompareAndSwap(false, true) {
			close(paused)
			<-release
		}
	}
	t.Cleanup(func() { commitHook = nil })
	return paused, release
}

// TestPatientsIngestInParallel (PERF-PG-2): a batch of one patient's
// records that has written its index rows, but not yet taken the apply
// lock, does not hold up a batch of another patient; and the one that
// commits last stamps a lastUpdated no earlier than the one committed
// first, though its clock read earlier (a replica's clock behind another's).
func TestPatientsIngestInParallel(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewFakeClock(storetest.T0)
	s, _ := freshStore(t, clock)
	paused, release := pauseFirst(t)

	a := storetest.Rec("session", "a", "h1", storetest.Res("Observation", "a1", "p1", `"status":"final"`,
		storetest.Token("code", "http://loinc.org", "1")))
	b := storetest.Rec("session", "b", "h1", storetest.Res("Observation", "b1", "p2", `"status":"final"`,
		storetest.Token("code", "http://loinc.org", "1")))
	errA := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, []store.RecordWrite{a})
		errA <- err
	}()
	select {
	case <-paused:
	case err := <-errA:
		t.Fatalf("batch A committed without reaching the apply lock: %v", err)
	}
	// A holds its row locks and has copied its index rows. B, another
	// patient, goes through (a wait for A would never end: A waits for
	// release).
	clock.Advance(5 * time.Second)
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Apply(bctx, []store.RecordWrite{b}); err != nil {
		close(release)
		t.Fatalf("batch B while A is paused before the apply lock: %v", err)
	}
	// A's clock reads earlier than B's committed lastUpdated.
	clock.Set(storetest.T0.Add(time.Second))
	close(release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	ra, err := s.Read(ctx, "Observation", "a1")
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Read(ctx, "Observation", "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !rb.LastUpdated.Equal(storetest.T0.Add(5 * time.Second)) {
		t.Errorf("B's lastUpdated %v, want %v", rb.LastUpdated, storetest.T0.Add(5*time.Second))
	}
	if ra.LastUpdated.Before(rb.LastUpdated) {
		t.Errorf("A committed after B with lastUpdated %v, before B's %v", ra.LastUpdated, rb.LastUpdated)
	}
	// The body is stamped with the time taken under the lock, not the one
	// A read when it started (T0).
	want := `"lastUpdated":"` + ra.LastUpdated.Format("2006-01-02T15:04:05.000Z07:00") + `"`
	if !bytes.Contains(ra.Body, []byte(want)) {
		t.Errorf("A's body %s, want meta %s", ra.Body, want)
	}
	hist, _, err := s.History(ctx, "Observation", "a1", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || !hist[0].LastUpdated.Equal(ra.LastUpdated) || !bytes.Equal(hist[0].Body, ra.Body) {
		t.Errorf("A's history %+v, want its one version as read", hist)
	}
}

// TestSameRecordWaits (PERF-PG-2): a batch writing a record another batch
// is writing waits for it (on the rows it locked) and then writes the next
// version: none is lost, versions and lastUpdated follow commit order.
func TestSameRecordWaits(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewFakeClock(storetest.T0)
	s, u := freshStore(t, clock)
	rec := func(hash, status string) store.RecordWrite {
		return storetest.Rec("session", "a", hash, storetest.Res("Observation", "a1", "p1", `"status":"`+status+`"`,
			storetest.Token("status", "", status)))
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{rec("h1", "preliminary")}); err != nil {
		t.Fatal(err)
	}
	paused, release := pauseFirst(t)
	clock.Advance(time.Second)
	errA := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, []store.RecordWrite{rec("h2", "final")})
		errA <- err
	}()
	<-paused
	errB := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, []store.RecordWrite{rec("h3", "amended")})
		errB <- err
	}()
	// B waits for a row lock A holds.
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for waiting := false; !waiting; {
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE application_name = current_setting('application_name') AND wait_event_type = 'Lock'
			AND query LIKE '%FOR NO KEY UPDATE%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errB:
			close(release)
			t.Fatalf("B committed while A held the record: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	hist, _, err := s.History(ctx, "Observation", "a1", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("%d versions, want 3", len(hist))
	}
	// History lists the newest first.
	for i, status := range []string{"amended", "final", "preliminary"} {
		if hist[i].Version != int64(3-i) || !bytes.Contains(hist[i].Body, []byte(`"status":"`+status+`"`)) {
			t.Errorf("version %d: %s, want status %s", hist[i].Version, hist[i].Body, status)
		}
	}
	if hist[0].LastUpdated.Before(hist[1].LastUpdated) || hist[1].LastUpdated.Before(hist[2].LastUpdated) {
		t.Errorf("lastUpdated out of commit order: %v %v %v", hist[2].LastUpdated, hist[1].LastUpdated, hist[0].LastUpdated)
	}
}

// TestSameNewRecordAtOnce (PERF-PG-2): two batches creating the same new
// record at once (no row to lock yet): the one that commits second fails on
// the unique key when it writes, is rerun, and finds the record stored:
// one version, one set of index rows.
func TestSameNewRecordAtOnce(t *testing.T) {
	ctx := context.Background()
	s, u := freshStore(t, storetest.NewFakeClock(storetest.T0))
	paused, release := pauseFirst(t)
	rec := storetest.Rec("session", "a", "h1", storetest.Res("Observation", "a1", "p1", `"status":"final"`,
		storetest.Token("code", "http://loinc.org", "1")))
	type answer struct {
		res []store.WriteResult
		err error
	}
	ansA := make(chan answer, 1)
	go func() {
		res, err := s.Apply(ctx, []store.RecordWrite{rec})
		ansA <- answer{res, err}
	}()
	<-paused
	resB, err := s.Apply(ctx, []store.RecordWrite{rec})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	a := <-ansA
	if a.err != nil {
		t.Fatal(a.err)
	}
	if resB[0].Outcome != store.Created || a.res[0].Outcome != store.Unchanged {
		t.Errorf("outcomes %s (second) and %s (first, paused), want created and unchanged", resB[0].Outcome, a.res[0].Outcome)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var hist, tokens, sources int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM history), (SELECT count(*) FROM idx_token x JOIN search_params p ON p.pid = x.pid WHERE p.name = 'code'),
		(SELECT count(*) FROM source_records)`).Scan(&hist, &tokens, &sources); err != nil {
		t.Fatal(err)
	}
	if hist != 1 || tokens != 1 || sources != 1 {
		t.Errorf("%d history rows, %d code index rows, %d source records; want 1 each", hist, tokens, sources)
	}
}
