package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// NewAuditStoreFunc returns a fresh, empty store.AuditStore on clock, with
// its cleanup registered on t.
type NewAuditStoreFunc func(t *testing.T, clock store.Clock) store.AuditStore

// RunAudit runs the store.AuditStore contract suite. Beyond the interface's
// doc comments it pins: every field round-trips (Recorded at millisecond
// precision, in UTC); the order is Recorded then ID whatever the insertion
// order; since is inclusive; a batch with an invalid record writes nothing;
// a batch larger than any one statement a backend uses is stored whole; ids
// of every shape round-trip (audit_archive.go); and old days are dropped
// only once exported (store.AuditArchive).
func RunAudit(t *testing.T, newStore NewAuditStoreFunc) {
	t.Run("RoundTripAndOrder", func(t *testing.T) { testAuditRoundTrip(t, newStore) })
	t.Run("LargeBatch", func(t *testing.T) { testAuditLargeBatch(t, newStore) })
	t.Run("SinceAndLimit", func(t *testing.T) { testAuditSinceLimit(t, newStore) })
	t.Run("DuplicateIgnored", func(t *testing.T) { testAuditDuplicate(t, newStore) })
	t.Run("InvalidBatch", func(t *testing.T) { testAuditInvalid(t, newStore) })
	t.Run("IDShapes", func(t *testing.T) { testAuditIDShapes(t, newStore) })
	t.Run("TextIDAcrossDays", func(t *testing.T) { testAuditTextIDAcrossDays(t, newStore) })
	t.Run("Archive", func(t *testing.T) { testAuditArchive(t, newStore) })
	t.Run("RepeatedResourceIDs", func(t *testing.T) { testAuditRepeatedResources(t, newStore) })
}

// testAuditRepeatedResources reads the same resource ids many times, in one
// batch and across batches: however a backend stores an id it has seen
// often (SQL stores: inline at first, a dictionary code later,
// docs/design/security.md AUD-ARCH-3), every record returns its own.
func testAuditRepeatedResources(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	ids := []string{
		"0b7e3a52-6f1c-5d2e-9a4b-3c8d1e2f4a5b", // a lowercase UUID
		"0B7E3A52-6F1C-5D2E-9A4B-3C8D1E2F4A5B", // the same, uppercase: another id
		"obs-1.a",                              // any other FHIR id
		"0123456789abcdef",                     // 16 characters, as long as a UUID's bytes
	}
	var want []store.AuditRecord
	n := 0
	for b := range 4 {
		var batch []store.AuditRecord
		for range 5 {
			for _, id := range ids {
				r := auditRec(fmt.Sprintf("r%03d", n), T0.Add(time.Duration(n)*time.Millisecond), "p1")
				r.ResourceID = id
				n++
				batch = append(batch, r)
			}
		}
		if err := s.AppendAudit(ctx, batch); err != nil {
			t.Fatalf("AppendAudit batch %d: %v", b, err)
		}
		want = append(want, batch...)
	}
	got := listAudit(t, s, time.Time{}, 0)
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].ResourceID != want[i].ResourceID {
			t.Errorf("record %d = %s about %q, want %s about %q", i, got[i].ID, got[i].ResourceID, want[i].ID, want[i].ResourceID)
		}
	}
}

func auditRec(id string, at time.Time, patient string) store.AuditRecord {
	return store.AuditRecord{ID: id, Recorded: at, Patient: patient, ClientID: "ehr-1",
		Interaction: "vread", Type: "Observation", ResourceID: "obs-" + id, Version: "3", Status: 200,
		FHIRUser: "Practitioner/dr1", Subject: "alice", Purpose: "TREAT", RequestID: "req-" + id,
		Organization: "org-" + id}
}

func listAudit(t *testing.T, s store.AuditStore, since time.Time, limit int) []store.AuditRecord {
	t.Helper()
	got, err := s.ListAudit(context.Background(), since, limit)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return got
}

func auditIDs(rs []store.AuditRecord) string {
	var b bytes.Buffer
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.ID)
	}
	return b.String()
}

func testAuditRoundTrip(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	t.Run("empty store lists nothing", func(t *testing.T) {
		if got := listAudit(t, s, time.Time{}, 0); len(got) != 0 {
			t.Fatalf("got %d records", len(got))
		}
	})
	t.Run("empty batch is a no-op", func(t *testing.T) {
		if err := s.AppendAudit(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	// Two batches, out of time order, with equal times ordered by id.
	local := time.FixedZone("UTC+2", 2*3600)
	b1 := []store.AuditRecord{
		auditRec("c", T0.Add(2*time.Second), "p1"),
		auditRec("b", T0.Add(time.Second), ""),
	}
	// A record with every optional field empty round-trips empty.
	b1[1] = store.AuditRecord{ID: "b", Recorded: b1[1].Recorded, Interaction: "search", Status: 401}
	b2 := []store.AuditRecord{
		auditRec("a", T0.Add(2*time.Second).In(local), "p2"),
		auditRec("d", T0.Add(1500*time.Microsecond), "p1"), // sub-ms digits are dropped
	}
	for i, b := range [][]store.AuditRecord{b1, b2} {
		if err := s.AppendAudit(ctx, b); err != nil {
			t.Fatalf("AppendAudit batch %d: %v", i, err)
		}
	}
	got := listAudit(t, s, time.Time{}, 0)
	if ids := auditIDs(got); ids != "d,b,a,c" {
		t.Fatalf("order = %s, want d,b,a,c", ids)
	}
	want := map[string]store.AuditRecord{}
	for _, r := range append(append([]store.AuditRecord{}, b1...), b2...) {
		r.Recorded = r.Recorded.Truncate(time.Millisecond).UTC()
		want[r.ID] = r
	}
	for _, r := range got {
		w := want[r.ID]
		t.Run("fields "+r.ID, func(t *testing.T) {
			if !r.Recorded.Equal(w.Recorded) || r.Recorded.Location() != time.UTC {
				t.Errorf("Recorded = %v, want %v in UTC", r.Recorded, w.Recorded)
			}
			g := r
			g.Recorded = w.Recorded
			if r.Patient != w.Patient || r.ClientID != w.ClientID || g != w {
				t.Errorf("got %+v, want %+v", r, w)
			}
		})
	}
}

func testAuditSinceLimit(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	var batch []store.AuditRecord
	for i := range 10 {
		batch = append(batch, auditRec(fmt.Sprintf("e%02d", i), T0.Add(time.Duration(i)*time.Second), "p1"))
	}
	if err := s.AppendAudit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		since time.Time
		limit int
		want  string
	}{
		{"all", time.Time{}, 0, "e00,e01,e02,e03,e04,e05,e06,e07,e08,e09"},
		{"limit", time.Time{}, 3, "e00,e01,e02"},
		{"since is inclusive", T0.Add(7 * time.Second), 0, "e07,e08,e09"},
		{"since between records", T0.Add(7*time.Second + 500*time.Millisecond), 0, "e08,e09"},
		{"since and limit", T0.Add(4 * time.Second), 2, "e04,e05"},
		{"since after all", T0.Add(time.Hour), 0, ""},
		{"negative limit is all", T0.Add(8 * time.Second), -1, "e08,e09"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := auditIDs(listAudit(t, s, tc.since, tc.limit)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func testAuditDuplicate(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	first := auditRec("x", T0, "p1")
	if err := s.AppendAudit(ctx, []store.AuditRecord{first}); err != nil {
		t.Fatal(err)
	}
	retry := auditRec("x", T0.Add(time.Minute), "p2")
	retry.Status, retry.RequestID = 500, "req-changed"
	if err := s.AppendAudit(ctx, []store.AuditRecord{retry, auditRec("y", T0, "p1")}); err != nil {
		t.Fatalf("a batch repeating a stored id must succeed: %v", err)
	}
	got := listAudit(t, s, time.Time{}, 0)
	if ids := auditIDs(got); ids != "x,y" {
		t.Fatalf("ids = %s, want x,y", ids)
	}
	if got[0].Patient != "p1" || got[0].Status != first.Status || got[0].RequestID != first.RequestID {
		t.Errorf("the stored record changed: %+v", got[0])
	}
}

func testAuditInvalid(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	noID := auditRec("", T0, "p1")
	noInteraction := auditRec("b", T0, "p1")
	noInteraction.Interaction = ""
	for _, tc := range []struct {
		name string
		bad  store.AuditRecord
	}{{"empty id", noID}, {"empty interaction", noInteraction}} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AppendAudit(ctx, []store.AuditRecord{auditRec("ok", T0, "p1"), tc.bad})
			if err == nil {
				t.Fatal("AppendAudit accepted an invalid record")
			}
			if got := listAudit(t, s, time.Time{}, 0); len(got) != 0 {
				t.Errorf("a failed batch wrote %d records", len(got))
			}
		})
	}
}

func testAuditLargeBatch(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	const n = 257 // several multi-row statements and a partial one
	var batch []store.AuditRecord
	for i := range n {
		batch = append(batch, auditRec(fmt.Sprintf("r%04d", i), T0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("p%d", i%7)))
	}
	batch = append(batch, batch[3]) // a repeated id inside the batch is skipped
	if err := s.AppendAudit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got := listAudit(t, s, time.Time{}, 0)
	if len(got) != n {
		t.Fatalf("stored %d records, want %d", len(got), n)
	}
	for i, r := range got {
		w := batch[i]
		w.Recorded = w.Recorded.UTC()
		if r != w {
			t.Fatalf("record %d = %+v, want %+v", i, r, w)
		}
	}
}
