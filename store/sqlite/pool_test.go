package sqlite_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestConcurrentColdSearchesDoNotDeadlock runs many more concurrent searches
// than the reader pool has connections, each of a search shape never prepared
// before (a statement-cache miss while the caller holds a read transaction).
// Preparing such a statement on the pool while holding a pooled connection
// deadlocked once every connection was held by a reader doing the same.
func TestConcurrentColdSearchesDoNotDeadlock(t *testing.T) {
	s := openTemp(t, store.SystemClock{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A stored Observation interns the code parameter, so searches reach SQL.
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "s1", "h1",
		storetest.Res("Observation", "o1", "p1", `"status":"final"`, storetest.Token("code", "http://loinc.org", "c0")))}); err != nil {
		t.Fatal(err)
	}
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := make(chan struct{})
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			// Distinct shapes: a different number of OR values per worker.
			vals := make([]store.Value, 1+i%32)
			for j := range vals {
				vals[j] = store.Value{AnySystem: true, Code: fmt.Sprintf("c%d", j)}
			}
			res, err := s.Search(ctx, store.Query{Type: "Observation", Total: true, Count: 10,
				Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: vals}}})
			if err == nil && res.Total != 1 {
				err = fmt.Errorf("worker %d: total %d, want 1", i, res.Total)
			}
			errs <- err
		}(i)
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("concurrent cold searches did not finish: reader pool deadlock")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
