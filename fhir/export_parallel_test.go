package fhir

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// The job's types are walked on several goroutines (eachParallel): every
// type is walked exactly once, and the first failure ends the job with its
// own error (errJobGone stays recognisable for runJob).
func TestEachParallel(t *testing.T) {
	t.Run("every item once", func(t *testing.T) {
		items := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		var mu sync.Mutex
		seen := map[int]int{}
		err := eachParallel(context.Background(), 3, items, func(_ context.Context, i int) error {
			mu.Lock()
			seen[i]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range items {
			if seen[i] != 1 {
				t.Errorf("item %d walked %d times, want once", i, seen[i])
			}
		}
	})
	t.Run("the first error ends the others", func(t *testing.T) {
		release := make(chan struct{})
		var cancelled sync.WaitGroup
		cancelled.Add(1)
		err := eachParallel(context.Background(), 2, []int{0, 1, 2, 3}, func(ctx context.Context, i int) error {
			switch i {
			case 0: // a long walk: ends when cancelled
				defer cancelled.Done()
				close(release)
				<-ctx.Done()
				return ctx.Err()
			case 1:
				<-release
				return errJobGone
			}
			return nil
		})
		if !errors.Is(err, errJobGone) {
			t.Fatalf("error %v, want errJobGone", err)
		}
		cancelled.Wait()
	})
	t.Run("no items", func(t *testing.T) {
		if err := eachParallel(context.Background(), 2, nil, func(context.Context, int) error { return errJobGone }); err != nil {
			t.Fatal(err)
		}
	})
}
