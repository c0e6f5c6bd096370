package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestBatchesQueueForTheWriter: batches that arrive while a long write
// holds the one writer connection wait for it and then each land whole;
// none fails for having waited (docs/design/security.md IN-6).
func TestBatchesQueueForTheWriter(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "queue.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The long write: a transaction on the writer that lasts until every
	// batch has been sent.
	holding, release := make(chan struct{}), make(chan struct{})
	long := make(chan error, 1)
	go func() {
		long <- s.writeTx(ctx, func(*sql.Conn) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding

	const batches, size = 16, 4
	var sent, done sync.WaitGroup
	results := make([][]store.WriteResult, batches)
	errs := make([]error, batches)
	for i := range batches {
		sent.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			recs := make([]store.RecordWrite, size)
			for j := range recs {
				id := fmt.Sprintf("b%d-o%d", i, j)
				recs[j] = storetest.Rec("session", id, "h1",
					storetest.Res("Observation", id, fmt.Sprintf("p%d", i), "", storetest.Token("code", "s", "c")))
			}
			sent.Done()
			results[i], errs[i] = s.Apply(ctx, recs)
		}()
	}
	sent.Wait()
	close(release)
	done.Wait()
	if err := <-long; err != nil {
		t.Fatalf("the long write: %v", err)
	}
	for i := range batches {
		if errs[i] != nil {
			t.Errorf("batch %d: %v", i, errs[i])
			continue
		}
		for j, r := range results[i] {
			if r.Outcome != store.Created {
				t.Errorf("batch %d record %d: %s, want created", i, j, r.Outcome)
			}
		}
		for j := range size {
			id := fmt.Sprintf("b%d-o%d", i, j)
			if _, err := s.Read(ctx, "Observation", id); err != nil {
				t.Errorf("batch %d: Observation %s: %v", i, id, err)
			}
		}
	}
}
