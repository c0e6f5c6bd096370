package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// testExpect checks RecordWrite.Expect, the preconditions that make writes
// of outside FHIR safe (docs/design/security.md RFL-3): checked inside the
// transaction, before anything of the record is written; a failure writes
// nothing of the record (no version, no history, no index rows) and is a
// *store.PreconditionError; of concurrent writers expecting one version,
// exactly one wins.
func testExpect(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	task := func(status string) store.ResourceWrite {
		return Res("Task", "t1", "p1", `,"status":"`+status+`"`, Token("status", "http://hl7.org/fhir/task-status", status), Ref("patient", "Patient/p1"))
	}
	expect := func(typ, id string, v int64) []store.Expectation {
		return []store.Expectation{{Key: store.Key{Type: typ, ID: id}, Version: v}}
	}
	statusCount := func(t *testing.T, s store.Store, status string) int {
		t.Helper()
		res, err := s.Search(ctx, store.Query{Type: "Task", Clauses: []store.Clause{clause("status", store.KindToken, tokV("http://hl7.org/fhir/task-status", status))}, Total: true})
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	wantPrecondition := func(t *testing.T, err error, key string, want, have int64) {
		t.Helper()
		var pe *store.PreconditionError
		if !errors.As(err, &pe) || !errors.Is(err, store.ErrPreconditionFailed) {
			t.Fatalf("err = %v, want a precondition failure", err)
		}
		if pe.Key.String() != key || pe.Want != want || pe.Have != have {
			t.Fatalf("precondition error = %+v, want %s want %d have %d", pe, key, want, have)
		}
	}

	t.Run("create only when absent", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		rec := Rec("referral-in", "sr1", "h1", Res("ServiceRequest", "sr1", "p1", `,"status":"active"`), Res("Patient", "p1", "p1", ""))
		rec.Expect = expect("ServiceRequest", "sr1", 0)
		res := apply(t, s, rec)
		wantResult(t, "create", res[0], "created ServiceRequest/sr1@1:created Patient/p1@1:created")

		// The same referral again, another hash: the expectation fails and
		// nothing is written, not even the Patient's new body.
		clock.Advance(time.Minute)
		again := Rec("referral-in", "sr1", "h2", Res("ServiceRequest", "sr1", "p1", `,"status":"revoked"`), Res("Patient", "p1", "p1", `,"active":true`))
		again.Expect = expect("ServiceRequest", "sr1", 0)
		results, err := s.Apply(ctx, []store.RecordWrite{again})
		wantPrecondition(t, err, "ServiceRequest/sr1", 0, 1)
		if len(results) != 1 || results[0].Outcome != store.Failed {
			t.Errorf("results = %+v, want one failed", results)
		}
		for _, typ := range []string{"ServiceRequest", "Patient"} {
			_, total, err := s.History(ctx, typ, map[string]string{"ServiceRequest": "sr1", "Patient": "p1"}[typ], 0, 0)
			if err != nil || total != 1 {
				t.Errorf("%s history: %d versions, %v; want 1", typ, total, err)
			}
		}
		// Even the same hash: the expectation comes first.
		same := rec
		same.Expect = expect("ServiceRequest", "sr1", 0)
		_, err = s.Apply(ctx, []store.RecordWrite{same})
		wantPrecondition(t, err, "ServiceRequest/sr1", 0, 1)
	})

	t.Run("update at the expected version", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("referral-in", "sr1", "h1", task("requested")))
		clock.Advance(time.Minute)
		upd := Rec("fhir", "Task/t1", "h2", task("received"))
		upd.Expect = expect("Task", "t1", 1)
		res := apply(t, s, upd)
		wantResult(t, "update", res[0], "created Task/t1@2:updated")

		// A stale expectation: nothing changes, the index included.
		clock.Advance(time.Minute)
		stale := Rec("fhir", "Task/t1", "h3", task("accepted"))
		stale.Expect = expect("Task", "t1", 1)
		_, err := s.Apply(ctx, []store.RecordWrite{stale})
		wantPrecondition(t, err, "Task/t1", 1, 2)
		r, err := s.Read(ctx, "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		if want := stamped(t, "Task", "t1", `,"status":"received"`, 2, T0.Add(time.Minute)); string(r.Body) != string(want) {
			t.Errorf("body = %s, want %s", r.Body, want)
		}
		if _, total, _ := s.History(ctx, "Task", "t1", 0, 0); total != 2 {
			t.Errorf("history: %d versions, want 2", total)
		}
		if statusCount(t, s, "accepted") != 0 || statusCount(t, s, "received") != 1 {
			t.Error("the failed update changed the index")
		}
	})

	t.Run("a deleted resource is version 0", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("fhir", "Task/t1", "h1", task("requested")))
		apply(t, s, Rec("fhir", "Task/t1", "h2")) // drops Task/t1: a deletion version
		bad := Rec("fhir", "Task/t1", "h3", task("requested"))
		bad.Expect = expect("Task", "t1", 2)
		_, err := s.Apply(ctx, []store.RecordWrite{bad})
		wantPrecondition(t, err, "Task/t1", 2, 0)
		again := Rec("fhir", "Task/t1", "h3", task("requested"))
		again.Expect = expect("Task", "t1", 0)
		res := apply(t, s, again)
		wantResult(t, "recreate", res[0], "updated Task/t1@3:created")
	})

	t.Run("all or nothing, the batch's other records land", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("fhir", "Task/t1", "h1", task("requested")))
		bad := Rec("referral-in", "sr2", "h1",
			Res("Patient", "p2", "p2", ""), Res("ServiceRequest", "sr2", "p2", ""), Res("Condition", "c2", "p2", ""))
		bad.Expect = []store.Expectation{{Key: store.Key{Type: "ServiceRequest", ID: "sr2"}}, {Key: store.Key{Type: "Task", ID: "t1"}, Version: 7}}
		good := Rec("referral-in", "sr3", "h1", Res("ServiceRequest", "sr3", "p1", ""))
		good.Expect = expect("ServiceRequest", "sr3", 0)
		results, err := s.Apply(ctx, []store.RecordWrite{bad, good})
		wantPrecondition(t, err, "Task/t1", 7, 1)
		if results[0].Outcome != store.Failed || results[1].Outcome != store.Created {
			t.Errorf("outcomes = %s, %s", results[0].Outcome, results[1].Outcome)
		}
		for _, k := range []store.Key{{Type: "Patient", ID: "p2"}, {Type: "ServiceRequest", ID: "sr2"}, {Type: "Condition", ID: "c2"}} {
			if _, err := s.Read(ctx, k.Type, k.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %v, want not found", k, err)
			}
		}
		if _, err := s.Read(ctx, "ServiceRequest", "sr3"); err != nil {
			t.Errorf("the good record: %v", err)
		}
		invalid := Rec("fhir", "x", "h1")
		invalid.Expect = []store.Expectation{{Key: store.Key{Type: "Task"}}}
		if _, err := s.Apply(ctx, []store.RecordWrite{invalid}); err == nil || errors.Is(err, store.ErrPreconditionFailed) {
			t.Errorf("an expectation without an id: %v, want a validation error", err)
		}
	})

	t.Run("concurrent writers expecting one version", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("fhir", "Task/t1", "h1", task("requested")))
		const n = 8
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			won, stale int
			other      []error
		)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := Rec("fhir", "Task/t1", fmt.Sprintf("w%d", i), task(fmt.Sprintf("s%d", i)))
				rec.Expect = expect("Task", "t1", 1)
				<-start
				_, err := s.Apply(ctx, []store.RecordWrite{rec})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, store.ErrPreconditionFailed):
					stale++
				default:
					other = append(other, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if won != 1 || stale != n-1 || len(other) > 0 {
			t.Fatalf("won %d, stale %d, other errors %v; want 1 and %d", won, stale, other, n-1)
		}
		r, err := s.Read(ctx, "Task", "t1")
		if err != nil || r.Version != 2 {
			t.Fatalf("Task/t1 at version %d, %v; want 2", r.Version, err)
		}
		if _, total, _ := s.History(ctx, "Task", "t1", 0, 0); total != 2 {
			t.Errorf("history: %d versions, want 2", total)
		}
	})
}

// testLastUpdatedOrder checks that lastUpdated never goes back within a
// type in commit order (store.Store.Apply): a writer whose clock runs
// behind (another replica's) stamps the latest committed lastUpdated of
// the types it writes, so a poll with _lastUpdated=ge misses nothing.
func testLastUpdatedOrder(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0.Add(time.Hour))
	s := newStore(t, clock)
	apply(t, s, Rec("fhir", "Task/t1", "h1", Res("Task", "t1", "", `,"status":"requested"`)))
	// A replica whose clock is an hour behind.
	clock.Set(T0)
	apply(t, s, Rec("fhir", "Task/t2", "h1", Res("Task", "t2", "", `,"status":"requested"`)),
		Rec("patient", "p9", "h1", Res("Patient", "p9", "p9", "")))
	r, err := s.Read(ctx, "Task", "t2")
	if err != nil {
		t.Fatal(err)
	}
	if !r.LastUpdated.Equal(T0.Add(time.Hour)) {
		t.Errorf("Task/t2 lastUpdated %s, want the latest Task's %s", r.LastUpdated, T0.Add(time.Hour))
	}
	res, err := s.Search(ctx, store.Query{Type: "Task", Clauses: []store.Clause{{Param: store.ParamLastUpdated, Kind: store.KindDate,
		Values: []store.Value{{Prefix: store.Ge, Lo: T0.Add(time.Hour).UnixMilli(), Hi: T0.Add(time.Hour).UnixMilli()}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Resources) != 2 {
		t.Errorf("_lastUpdated=ge the first Task's: %d Tasks, want 2", len(res.Resources))
	}
	// The clock going forward again is taken as is.
	clock.Set(T0.Add(2 * time.Hour))
	apply(t, s, Rec("fhir", "Task/t3", "h1", Res("Task", "t3", "", `,"status":"requested"`)))
	if r, _ := s.Read(ctx, "Task", "t3"); !r.LastUpdated.Equal(T0.Add(2 * time.Hour)) {
		t.Errorf("Task/t3 lastUpdated %s", r.LastUpdated)
	}
}

// testCreateOnly checks ResourceWrite.CreateOnly: written when absent or
// deleted, left alone (Unchanged, no version) when it exists, whoever
// wrote it last; the record's other resources are written as usual.
func testCreateOnly(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	task := func(status string) store.ResourceWrite {
		rw := Res("Task", "t1", "p1", `,"status":"`+status+`"`, Token("status", "http://hl7.org/fhir/task-status", status))
		rw.CreateOnly = true
		return rw
	}
	res := apply(t, s, Rec("referral", "r1", "h1", Res("ServiceRequest", "sr1", "p1", `,"note":"a"`), task("requested")))
	wantResult(t, "create", res[0], "created ServiceRequest/sr1@1:created Task/t1@1:created")
	// Someone else moves the Task.
	clock.Advance(time.Minute)
	moved := Rec("fhir-update", "Task/t1", "h1", Res("Task", "t1", "p1", `,"status":"accepted"`, Token("status", "http://hl7.org/fhir/task-status", "accepted")))
	apply(t, s, moved)
	// The record again, changed: its ServiceRequest is updated, its Task
	// left as it was moved.
	clock.Advance(time.Minute)
	res = apply(t, s, Rec("referral", "r1", "h2", Res("ServiceRequest", "sr1", "p1", `,"note":"b"`), task("requested")))
	wantResult(t, "re-send", res[0], "updated ServiceRequest/sr1@2:updated Task/t1@2:unchanged")
	r, err := s.Read(ctx, "Task", "t1")
	if err != nil || !bytes.Contains(r.Body, []byte(`"accepted"`)) || r.Version != 2 {
		t.Errorf("Task/t1 v%d %s, %v; want the accepted version 2", r.Version, r.Body, err)
	}
}
