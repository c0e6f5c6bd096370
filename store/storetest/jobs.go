package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// testJobs: a job is created, replaced as it progresses, read back exactly,
// deleted, and expired by age (store.JobStore).
func testJobs(t *testing.T, newStore NewStoreFunc) {
	s := newStore(t, NewFakeClock(T0))
	js, ok := s.(store.JobStore)
	if !ok {
		t.Skip("the store does not keep jobs (store.JobStore)")
	}
	ctx := context.Background()
	if _, err := js.GetJob(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown job: %v, want ErrNotFound", err)
	}
	j := store.Job{ID: "j1", Kind: "ingest", Owner: "etl", Status: store.JobRunning, Created: T0, Updated: T0, Total: 3000}
	if err := js.PutJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := js.GetJob(ctx, "j1")
	if err != nil || got.Status != store.JobRunning || got.Owner != "etl" || got.Total != 3000 || got.Result != nil ||
		!got.Created.Equal(T0) {
		t.Fatalf("running job: %+v %v", got, err)
	}
	j.Status, j.Progress, j.Updated = store.JobDone, 3000, T0.Add(90*time.Second+123*time.Millisecond)
	j.Result = []byte(`{"summary":{"created":3000}}`)
	if err := js.PutJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err = js.GetJob(ctx, "j1")
	if err != nil || got.Status != store.JobDone || got.Progress != 3000 || string(got.Result) != string(j.Result) ||
		!got.Updated.Equal(j.Updated) || !got.Created.Equal(T0) || got.Kind != "ingest" {
		t.Fatalf("done job: %+v %v", got, err)
	}
	old := store.Job{ID: "j0", Kind: "ingest", Owner: "etl", Status: store.JobFailed, Created: T0.Add(-48 * time.Hour),
		Updated: T0.Add(-48 * time.Hour), Error: "the store failed"}
	if err := js.PutJob(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got, err := js.GetJob(ctx, "j0"); err != nil || got.Error != old.Error || got.Status != store.JobFailed {
		t.Fatalf("failed job: %+v %v", got, err)
	}
	if n, err := js.DeleteJobsBefore(ctx, T0.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("expired %d jobs, err %v; want 1", n, err)
	}
	if _, err := js.GetJob(ctx, "j0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired job: %v", err)
	}
	if err := js.DeleteJob(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteJob(ctx, "j1"); err != nil {
		t.Errorf("deleting a deleted job: %v", err)
	}
	if _, err := js.GetJob(ctx, "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted job: %v", err)
	}
}
