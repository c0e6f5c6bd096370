package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// testReadiness: Ping answers promptly while a large Apply holds the writer,
// and WriterLag reports the write in flight (docs/design/architecture.md,
// Operability). A probe that waited for the writer made a load balancer pull
// a healthy replica during a long ingest.
func testReadiness(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	wl, ok := s.(store.WriterLagger)
	if !ok {
		// A wrapper (the read cache's test harness) hides it; the backends
		// assert they implement it.
		t.Skip("the store does not report its writer's lag (store.WriterLagger)")
	}
	ctx := context.Background()
	if lag := wl.WriterLag(); lag != 0 {
		t.Fatalf("writer lag %v with nothing written", lag)
	}
	// Ever larger batches until one is still being written when Ping has
	// answered: the probe must not wait for it.
	for n := 2000; n <= 64000; n *= 2 {
		recs := make([]store.RecordWrite, n)
		for i := range recs {
			id := fmt.Sprintf("r%d-%d", n, i)
			recs[i] = Rec("patient", id, "h1", Res("Patient", id, id, `"gender":"female"`,
				Token("gender", "http://hl7.org/fhir/administrative-gender", "female"), Str("name", "Doe")))
		}
		done := make(chan error, 1)
		go func() {
			_, err := s.Apply(ctx, recs)
			done <- err
		}()
		busy := waitBusy(wl, done)
		if !busy {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		start := time.Now()
		err := s.Ping(pctx)
		cancel()
		took := time.Since(start)
		stillBusy := wl.WriterLag() > 0
		if werr := <-done; werr != nil {
			t.Fatal(werr)
		}
		if err != nil {
			t.Fatalf("Ping while a write of %d records held the writer: %v (after %v)", n, err, took)
		}
		if stillBusy {
			t.Logf("Ping answered in %v while a write of %d records ran", took, n)
			if lag := wl.WriterLag(); lag != 0 {
				t.Errorf("writer lag %v after the write", lag)
			}
			return
		}
	}
	t.Fatal("Ping never answered while a write was still running: it waits for the writer")
}

// waitBusy waits until the writer reports a write in flight (true) or the
// write is done (false).
func waitBusy(wl store.WriterLagger, done chan error) bool {
	for {
		if wl.WriterLag() > 0 {
			return true
		}
		select {
		case err := <-done:
			done <- err
			return false
		case <-time.After(time.Millisecond):
		}
	}
}
