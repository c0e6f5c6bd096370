package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// ExportStore is a backend's resource store with Bulk Data export's
// snapshot reads and job state.
type ExportStore interface {
	store.Store
	store.Exporter
	store.JobStore
}

// NewExportStoreFunc returns a fresh, empty ExportStore on clock.
type NewExportStoreFunc func(t *testing.T, clock store.Clock) ExportStore

// RunExport runs the contract of store.Exporter and store.JobStore.
func RunExport(t *testing.T, newStore NewExportStoreFunc) {
	t.Run("Snapshot", func(t *testing.T) { testExportSnapshot(t, newStore) })
	t.Run("Restrictions", func(t *testing.T) { testExportRestrictions(t, newStore) })
	t.Run("ConcurrentWrites", func(t *testing.T) { testExportConcurrent(t, newStore) })
	t.Run("AccessJudgedNow", func(t *testing.T) { testExportAccessNow(t, newStore) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, newStore) })
}

// exportAll pages through q (page size count) and renders each resource as
// "id vN" or "id deleted", sorted. It checks that positions only grow,
// within and across pages and up to q.Last, that the bodies carry their
// version, and that the same walk without bodies finds the same resources.
func exportAll(t *testing.T, s store.Exporter, q store.ExportQuery, count int) []string {
	t.Helper()
	out := exportWalk(t, s, q, count)
	// The kinds split the walk: the live resources and the deletions.
	live, deletions := q, q
	live.Kind, deletions.Kind = store.ExportLive, store.ExportDeletions
	lw, dw := exportWalk(t, s, live, count), exportWalk(t, s, deletions, count)
	for _, l := range lw {
		if strings.HasSuffix(l, " deleted") {
			t.Fatalf("a deletion (%s) in the live resources", l)
		}
	}
	for _, d := range dw {
		if !strings.HasSuffix(d, " deleted") {
			t.Fatalf("a live resource (%s) in the deletions", d)
		}
	}
	both := append(slices.Clone(lw), dw...)
	slices.Sort(both)
	wantStrings(t, "the live resources and the deletions", both, out)
	for _, k := range []store.ExportQuery{q, live, deletions} {
		exportCounts(t, s, k, count)
	}
	exportLean(t, s, q, count)
	q.NoBody = true
	wantStrings(t, "the same walk without bodies", exportWalk(t, s, q, count), out)
	return out
}

// exportLean checks that a Lean walk of q (page size count) finds the
// positions, deletions and bodies of the full walk, and no other field.
func exportLean(t *testing.T, s store.Exporter, q store.ExportQuery, count int) {
	t.Helper()
	walk := func(q store.ExportQuery) []string {
		var out []string
		q.Count = count
		for range 1000 {
			n := 0
			if err := s.Export(context.Background(), q, func(pos int64, r *store.Resource) error {
				n++
				q.After = pos
				if q.Lean && (r.ID != "" || r.Version != 0 || !r.LastUpdated.IsZero() || r.Patient != "") {
					t.Fatalf("a lean walk read %+v", r)
				}
				out = append(out, fmt.Sprintf("%d %t %s", pos, r.Deleted, r.Body))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n < count {
				return out
			}
		}
		t.Fatal("export does not end")
		return nil
	}
	lean := q
	lean.Lean = true
	wantStrings(t, "the lean walk", walk(lean), walk(q))
}

// exportCounts checks that ExportCount counts each page of q (page size
// count) as the walk finds it: how many, and the last position.
func exportCounts(t *testing.T, s store.Exporter, q store.ExportQuery, count int) {
	t.Helper()
	q.Count = count
	for range 1000 {
		n, last := 0, int64(0)
		if err := s.Export(context.Background(), q, func(pos int64, _ *store.Resource) error {
			n++
			last = pos
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cn, clast, err := s.ExportCount(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if cn != n || clast != last {
			t.Fatalf("ExportCount after %d: %d up to %d, the walk finds %d up to %d", q.After, cn, clast, n, last)
		}
		if n < count {
			return
		}
		q.After = last
	}
	t.Fatal("export does not end")
}

func exportWalk(t *testing.T, s store.Exporter, q store.ExportQuery, count int) []string {
	t.Helper()
	q.Count = count
	var out []string
	for range 1000 {
		n := 0
		err := s.Export(context.Background(), q, func(pos int64, r *store.Resource) error {
			if pos <= q.After || (q.Last > 0 && pos > q.Last) {
				t.Fatalf("%s at position %d in a page after %d up to %d", r.ID, pos, q.After, q.Last)
			}
			q.After = pos
			n++
			if r.Type != q.Type {
				t.Fatalf("type %s in an export of %s", r.Type, q.Type)
			}
			switch {
			case r.Deleted:
				if r.Body != nil {
					t.Fatalf("%s: a deletion with a body", r.ID)
				}
				out = append(out, r.ID+" deleted")
				return nil
			case q.NoBody:
				if r.Body != nil {
					t.Fatalf("%s: a body in a walk without bodies", r.ID)
				}
			default:
				if want := fmt.Sprintf(`"versionId":"%d"`, r.Version); !strings.Contains(string(r.Body), want) {
					t.Fatalf("%s v%d: body %s lacks %s", r.ID, r.Version, r.Body, want)
				}
			}
			out = append(out, fmt.Sprintf("%s v%d", r.ID, r.Version))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n > count {
			t.Fatalf("a page of %d resources, asked for %d", n, count)
		}
		if n < count {
			slices.Sort(out)
			return out
		}
	}
	t.Fatal("export does not end")
	return nil
}

// exportPage returns one page of q, the bodies copied.
func exportPage(t *testing.T, s store.Exporter, q store.ExportQuery) ([]store.Resource, error) {
	t.Helper()
	var page []store.Resource
	err := s.Export(context.Background(), q, func(_ int64, r *store.Resource) error {
		c := *r
		c.Body = slices.Clone(r.Body)
		page = append(page, c)
		return nil
	})
	return page, err
}

func testExportSnapshot(t *testing.T, newStore NewExportStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	obs := func(id, patient, hash, rest string) store.RecordWrite {
		return Rec("session", id, hash, Res("Observation", id, patient, rest, Ref("subject", "Patient/"+patient)))
	}
	apply(t, s,
		Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", "")),
		Rec("patient", "p2", "h1", Res("Patient", "p2", "p2", "")),
		obs("o1", "p1", "h1", `,"status":"preliminary"`),
		obs("o2", "p2", "h1", ""),
		obs("o4", "p1", "h1", ""),
	)
	clock.Advance(time.Second)
	obsDeleted := Rec("session", "o4", "h2") // o4's record no longer produces it
	apply(t, s, obsDeleted)
	clock.Advance(time.Second)
	t1 := clock.Now() // the snapshot: o4 deleted at T0+1s
	clock.Advance(time.Second)
	// Writes after the snapshot: an update, a deletion, a creation, and a
	// re-creation of the deleted one.
	apply(t, s,
		obs("o1", "p1", "h2", `,"status":"final"`),
		Rec("session", "o2", "h2"),
		obs("o3", "p1", "h1", ""),
		obs("o4", "p1", "h3", `,"status":"final"`),
	)
	t2 := clock.Now()
	for _, tc := range []struct {
		name string
		q    store.ExportQuery
		want []string
	}{
		{"at the snapshot: versions then, nothing newer, deletions left out",
			store.ExportQuery{Type: "Observation", At: t1}, []string{"o1 v1", "o2 v1"}},
		{"now", store.ExportQuery{Type: "Observation", At: t2}, []string{"o1 v2", "o3 v1", "o4 v3"}},
		{"since the snapshot: exactly what changed, deletions listed",
			store.ExportQuery{Type: "Observation", At: t2, Since: t1}, []string{"o1 v2", "o2 deleted", "o3 v1", "o4 v3"}},
		{"since before the deletion, at the snapshot",
			store.ExportQuery{Type: "Observation", At: t1, Since: T0}, []string{"o4 deleted"}},
		{"since at the snapshot's own time: nothing", store.ExportQuery{Type: "Observation", At: t1, Since: t1}, nil},
		{"before anything was written", store.ExportQuery{Type: "Observation", At: T0.Add(-time.Millisecond)}, nil},
		{"other type", store.ExportQuery{Type: "Patient", At: t1}, []string{"p1 v1", "p2 v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, count := range []int{1, 2, 100} {
				wantStrings(t, fmt.Sprintf("export (pages of %d)", count), exportAll(t, s, tc.q, count), tc.want)
			}
		})
	}
	t.Run("body is the version at the snapshot", func(t *testing.T) {
		page, err := exportPage(t, s, store.ExportQuery{Type: "Observation", At: t1, Count: 1})
		if err != nil || len(page) != 1 {
			t.Fatalf("page %v, err %v", page, err)
		}
		if want := stamped(t, "Observation", "o1", `,"status":"preliminary"`, 1, T0); string(page[0].Body) != string(want) {
			t.Fatalf("body %s, want %s", page[0].Body, want)
		}
		if page[0].Patient != "p1" || !page[0].LastUpdated.Equal(T0) {
			t.Fatalf("patient %q lastUpdated %v", page[0].Patient, page[0].LastUpdated)
		}
	})
	t.Run("query checked", func(t *testing.T) {
		if _, err := exportPage(t, s, store.ExportQuery{Type: "Observation", At: t1}); err == nil {
			t.Fatal("no count accepted")
		}
		if _, err := exportPage(t, s, store.ExportQuery{Type: "Observation", Count: 1}); err == nil {
			t.Fatal("no snapshot time accepted")
		}
	})
}

// testExportConcurrent walks a snapshot while another goroutine updates,
// deletes, re-creates and creates resources of the type: the walk, in small
// pages, with and without bodies, holds exactly the versions current at the
// snapshot; then a _since walk from the snapshot holds exactly what the
// writer changed, in its last state.
func testExportConcurrent(t *testing.T, newStore NewExportStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	const n = 40
	obs := func(i int, hash, status string) store.RecordWrite {
		id := fmt.Sprintf("o%03d", i)
		return Rec("session", id, hash, Res("Observation", id, "p1", `,"status":"`+status+`"`, Ref("subject", "Patient/p1")))
	}
	recs := []store.RecordWrite{Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", ""))}
	var want []string
	for i := range n {
		recs = append(recs, obs(i, "h1", "preliminary"))
		want = append(want, fmt.Sprintf("o%03d v1", i))
	}
	apply(t, s, recs...)
	clock.Advance(time.Second)
	at := clock.Now()
	clock.Advance(time.Second)

	// The writer: round r updates, deletes, re-creates or creates one
	// resource; last holds each changed resource's final state.
	ver := map[int]int{} // current version, 0: never stored
	live := map[int]bool{}
	for i := range n {
		ver[i], live[i] = 1, true
	}
	last := map[string]string{}
	var rounds atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for r := 0; ; r++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			clock.Advance(time.Millisecond)
			i := r % (n + 10) // and 10 ids created after the snapshot
			id := fmt.Sprintf("o%03d", i)
			rec := obs(i, fmt.Sprintf("u%d", r), fmt.Sprintf("s%d", r))
			if live[i] && r%3 == 2 {
				rec = Rec("session", id, fmt.Sprintf("d%d", r)) // the record no longer produces it
			}
			if _, err := s.Apply(context.Background(), []store.RecordWrite{rec}); err != nil {
				done <- err
				return
			}
			ver[i]++ // a deletion is a version too
			live[i] = rec.Resources != nil
			last[id] = fmt.Sprintf("%s v%d", id, ver[i])
			if !live[i] {
				last[id] = id + " deleted"
			}
			rounds.Add(1)
		}
	}()
	// Walk the snapshot while the writer runs, in pages of 3, with and
	// without bodies, until the writer has been round every id a few times.
	for walks := 0; walks < 4 || rounds.Load() < 3*(n+10); walks++ {
		select {
		case err := <-done:
			t.Fatalf("the writer stopped: %v", err)
		default:
		}
		q := store.ExportQuery{Type: "Observation", At: at, NoBody: walks%2 == 1}
		wantStrings(t, "the snapshot under concurrent writes", exportWalk(t, s, q, 3), want)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Everything the writer did is after at: a later snapshot since at
	// holds exactly its changes, deletions listed.
	clock.Advance(time.Millisecond)
	var changed []string
	for _, v := range last {
		changed = append(changed, v)
	}
	slices.Sort(changed)
	got := exportAll(t, s, store.ExportQuery{Type: "Observation", At: clock.Now(), Since: at}, 4)
	wantStrings(t, "since the snapshot", got, changed)
	// And the snapshot itself has not moved.
	wantStrings(t, "the snapshot after the writes", exportAll(t, s, store.ExportQuery{Type: "Observation", At: at}, 7), want)
}

// testExportAccessNow: the snapshot's versions are those at At, but a
// restricted view is judged on the resources' current labels, index rows
// and compartments (docs/design/security.md BULK-8), which describe their
// current versions: a resource changed after At is left out under such a
// view, whichever way the change went, never shown in a version nobody
// judged; the unrestricted export keeps its version at At.
func testExportAccessNow(t *testing.T, newStore NewExportStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	accessFixture(t, s)
	at := clock.Now()
	clock.Advance(time.Second)
	r := Token("_security", sysConfidentiality, "R")
	vital := Token("category", sysObsCategory, "vital-signs")
	hr := Token("code", loinc, "8867-4")
	obs := func(id, patient string, rows ...store.IndexRow) store.RecordWrite {
		rows = append([]store.IndexRow{Ref("patient", "Patient/"+patient), Ref("subject", "Patient/"+patient)}, rows...)
		return Rec("session", id, "h2", Res("Observation", id, patient, `,"status":"amended"`, rows...))
	}
	// After the snapshot: v1 gets the restricted label, v3 loses it, v2
	// moves to p3's compartment.
	apply(t, s, obs("v1", "p1", vital, r, hr), obs("v3", "p2", vital, hr), obs("v2", "p3", vital, hr))
	for _, tc := range []struct {
		name string
		q    store.ExportQuery
		want []string
	}{
		{"unrestricted: the versions at the snapshot", store.ExportQuery{},
			[]string{"a1 v1", "a2 v1", "a3 v1", "a4 v1", "n1 v1", "v1 v1", "v2 v1", "v3 v1"}},
		{"a label added since excludes", store.ExportQuery{Access: access(term(nil, notR))},
			[]string{"a1 v1", "a3 v1", "a4 v1", "n1 v1"}},
		{"a compartment left since excludes", store.ExportQuery{Access: access(term(pats("p2")))}, []string{"a3 v1"}},
		{"a compartment entered since does not include", store.ExportQuery{Access: access(term(pats("p3")))}, []string{"a4 v1"}},
		{"since the snapshot, the current versions judged now", store.ExportQuery{Access: access(term(nil, notR)), Since: at},
			[]string{"v2 v2", "v3 v2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Type, tc.q.At = "Observation", at
			if !tc.q.Since.IsZero() {
				tc.q.At = clock.Now()
			}
			wantStrings(t, "export", exportAll(t, s, tc.q, 3), tc.want)
		})
	}
}

func testExportRestrictions(t *testing.T, newStore NewExportStoreFunc) {
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	accessFixture(t, s)
	at := clock.Now()
	term := func(patients []string, cls ...store.Clause) store.AccessTerm {
		return store.AccessTerm{Patients: patients, Types: []string{"Observation"}, Clauses: cls}
	}
	psyLabel := store.Clause{Param: "_security", Kind: store.KindToken, Values: []store.Value{{System: sysActCode, Code: "PSY"}}}
	obs := func(q store.ExportQuery) store.ExportQuery {
		q.Type, q.At = "Observation", at
		return q
	}
	for _, tc := range []struct {
		name string
		q    store.ExportQuery
		want []string
	}{
		{"all", obs(store.ExportQuery{}), []string{"a1 v1", "a2 v1", "a3 v1", "a4 v1", "n1 v1", "v1 v1", "v2 v1", "v3 v1"}},
		{"compartments", obs(store.ExportQuery{Patients: []string{"p2", "p3"}}), []string{"a3 v1", "a4 v1", "v2 v1", "v3 v1"}},
		{"ids", obs(store.ExportQuery{IDs: []string{"v2", "a1", "zz"}}), []string{"a1 v1", "v2 v1"}},
		{"filters ORed", obs(store.ExportQuery{Filters: access(term(nil, survey), term(nil, psyLabel))}),
			[]string{"a1 v1", "a2 v1", "a3 v1", "a4 v1"}},
		{"access: a patient's, not restricted", obs(store.ExportQuery{Access: access(term([]string{"p1"}, notR))}),
			[]string{"a1 v1", "n1 v1", "v1 v1"}},
		{"access and filters and compartments", obs(store.ExportQuery{
			Patients: []string{"p1", "p2"},
			Filters:  access(term(nil, vitalSigns)),
			Access:   access(term(nil, notR)),
		}), []string{"v1 v1", "v2 v1"}},
		{"access without terms: nothing", obs(store.ExportQuery{Access: access()}), nil},
		{"access of another type: nothing", store.ExportQuery{Type: "Condition", At: at, Access: access(term(nil))}, nil},
		{"a term open to everything", store.ExportQuery{Type: "Practitioner", At: at, Access: access(store.AccessTerm{})}, []string{"pr1 v1"}},
		{"a patient term excludes what has no compartment", store.ExportQuery{Type: "Practitioner", At: at,
			Access: access(store.AccessTerm{Patients: []string{"p1"}})}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStrings(t, "export", exportAll(t, s, tc.q, 3), tc.want)
		})
	}
}

func testJobs(t *testing.T, newStore NewExportStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	job := func(id, owner string) store.Job {
		return store.Job{ID: id, Kind: "export", Owner: owner, Request: []byte(`{"r":"` + id + `"}`), Created: clock.Now()}
	}
	for _, id := range []string{"j1", "j2"} {
		if err := s.CreateJob(ctx, job(id, "c1"), 2); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Millisecond)
	}
	wantErr(t, "third active job", s.CreateJob(ctx, job("j3", "c1"), 2), store.ErrTooManyJobs)
	if err := s.CreateJob(ctx, job("k1", "c2"), 2); err != nil {
		t.Fatal("another owner's limit:", err)
	}
	if err := s.CreateJob(ctx, store.Job{ID: "j4", Kind: "other", Owner: "c1", Created: clock.Now()}, 2); err != nil {
		t.Fatal("another kind's limit:", err)
	}
	if err := s.CreateJob(ctx, job("j1", "c9"), 0); err == nil {
		t.Fatal("a duplicate job id was accepted")
	}
	got, err := s.Job(ctx, "j1", clock.Now())
	if err != nil || got.State != store.JobAccepted || got.Owner != "c1" || string(got.Request) != `{"r":"j1"}` || !got.Created.Equal(T0) {
		t.Fatalf("job %+v, err %v", got, err)
	}
	_, err = s.Job(ctx, "nope", clock.Now())
	wantErr(t, "unknown job", err, store.ErrNotFound)

	// A job its creator runs itself: running from the start under the
	// creator's lease, updated under it, never claimed by a worker of its
	// kind while the lease holds.
	held := clock.Now().Add(time.Hour)
	self := store.Job{ID: "s1", Kind: "self", Owner: "c1", State: store.JobRunning, Lease: held, Created: clock.Now()}
	if err := s.CreateJob(ctx, self, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Job(ctx, "s1", clock.Now()); err != nil || got.State != store.JobRunning || !got.Lease.Equal(held) {
		t.Fatalf("self-run job %+v, err %v", got, err)
	}
	if c, ok, err := s.ClaimJob(ctx, "self", clock.Now(), held); err != nil || ok {
		t.Fatalf("claimed a self-run job under its lease: %+v %v %v", c, ok, err)
	}
	self.State, self.Progress, self.Updated, self.Expires = store.JobDone, "3/3", clock.Now(), T0.Add(48*time.Hour)
	if ok, err := s.UpdateJob(ctx, self, held); err != nil || !ok {
		t.Fatalf("self-run job's update under its lease: %v %v", ok, err)
	}

	// Claims: oldest first, one winner, a lease.
	now := clock.Now()
	lease := now.Add(time.Minute)
	c, ok, err := s.ClaimJob(ctx, "export", now, lease)
	if err != nil || !ok || c.ID != "j1" || c.State != store.JobRunning || !c.Lease.Equal(lease) || c.Attempts != 1 {
		t.Fatalf("claim %+v %v %v", c, ok, err)
	}
	c.Progress = "50%"
	c.Updated = now
	lease2 := now.Add(2 * time.Minute)
	c.Lease = lease2
	if ok, err := s.UpdateJob(ctx, c, lease); err != nil || !ok {
		t.Fatalf("update under the lease: %v %v", ok, err)
	}
	if ok, err := s.UpdateJob(ctx, c, lease); err != nil || ok {
		t.Fatalf("update under a lease no longer held: %v %v", ok, err)
	}
	for _, want := range []string{"j2", "k1"} {
		c2, ok, err := s.ClaimJob(ctx, "export", now, lease)
		if err != nil || !ok || c2.ID != want {
			t.Fatalf("claim %+v %v %v, want %s", c2, ok, err, want)
		}
	}
	if _, ok, err := s.ClaimJob(ctx, "export", now, lease); err != nil || ok {
		t.Fatalf("claim with none left: %v %v", ok, err)
	}
	// A worker that died: its lease ends, another claims the job.
	c3, ok, err := s.ClaimJob(ctx, "export", lease2.Add(time.Millisecond), lease2.Add(time.Hour))
	if err != nil || !ok || c3.ID != "j1" || c3.Attempts != 2 || c3.Progress != "50%" {
		t.Fatalf("reclaim %+v %v %v", c3, ok, err)
	}
	if ok, err := s.UpdateJob(ctx, c, lease2); err != nil || ok {
		t.Fatalf("the dead worker's update: %v %v", ok, err)
	}
	// Done: no longer counts against the limit, expires.
	c3.State, c3.Result, c3.Expires, c3.Lease = store.JobDone, []byte(`{"n":1}`), T0.Add(24*time.Hour), time.Time{}
	if ok, err := s.UpdateJob(ctx, c3, lease2.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if err := s.CreateJob(ctx, job("j5", "c1"), 2); err != nil {
		t.Fatal("a finished job counted against the limit:", err)
	}
	got, err = s.Job(ctx, "j1", clock.Now())
	if err != nil || got.State != store.JobDone || string(got.Result) != `{"n":1}` || !got.Lease.IsZero() {
		t.Fatalf("done job %+v, err %v", got, err)
	}
	_, err = s.Job(ctx, "j1", T0.Add(24*time.Hour))
	wantErr(t, "expired job", err, store.ErrNotFound)
	n, err := s.DeleteExpiredJobs(ctx, T0.Add(24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expired %d, err %v", n, err)
	}
	// Delete (cancel): the worker's next update fails.
	if ok, err := s.DeleteJob(ctx, "j2"); err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, err := s.DeleteJob(ctx, "j2"); err != nil || ok {
		t.Fatalf("delete again: %v %v", ok, err)
	}
	if ok, err := s.UpdateJob(ctx, store.Job{ID: "j2", State: store.JobDone, Updated: now}, lease); err != nil || ok {
		t.Fatalf("update of a deleted job: %v %v", ok, err)
	}
}
