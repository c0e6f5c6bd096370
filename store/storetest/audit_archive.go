package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// The compact trail's own cases (docs/design/security.md AUD-ARCH-1): ids
// of every shape round-trip, text ids stay unique across days, and old days
// are dropped only after an export wrote every event they hold.

// v7At returns a UUIDv7 string whose time is at's millisecond and whose
// random bits are n.
func v7At(at time.Time, n uint64) string {
	ms := uint64(at.UnixMilli())
	return fmt.Sprintf("%08x-%04x-7%03x-%04x-%012x", ms>>16, ms&0xffff, n>>52&0xfff, 0x8000|(n>>36&0x3fff), n&0xffffffffffff)
}

func testAuditIDShapes(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	at := T0.Add(1234 * time.Millisecond)
	recs := []store.AuditRecord{
		auditRec(v7At(at, 1), at, "p1"),                            // the writer's form: stored compact
		auditRec(v7At(at, 0xfffffffffffffff), at, "p1"),            // high random bits
		auditRec(v7At(at.Add(time.Second), 7), at, "p2"),           // a UUIDv7 of another instant: stored as text
		auditRec("0190f3a2-7b1c-4def-8abc-0123456789ab", at, "p3"), // a version-4 shaped UUID
		auditRec("0190F3A2-7B1C-7DEF-8ABC-0123456789AB", at, "p3"), // upper case is not the canonical form
	}
	recs[0].RequestID = "00ff10a0b0c0d0e0f0a0b0c0" // the gateway's own request ids: lowercase hex
	recs[1].RequestID = "0A"                       // upper-case hex stays as sent
	recs[2].RequestID = "abc"                      // odd length
	recs[3].RequestID = "client-req.1_X"
	recs[4].Status = 503
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got := listAudit(t, s, time.Time{}, 0)
	if len(got) != len(recs) {
		t.Fatalf("stored %d records, want %d", len(got), len(recs))
	}
	byID := map[string]store.AuditRecord{}
	for _, r := range got {
		byID[r.ID] = r
	}
	for _, w := range recs {
		w.Recorded = w.Recorded.UTC()
		if g, ok := byID[w.ID]; !ok || g != w {
			t.Errorf("record %s = %+v, want %+v", w.ID, g, w)
		}
	}
	// Retrying the batch stores nothing new, whatever the id's form.
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if n := len(listAudit(t, s, time.Time{}, 0)); n != len(recs) {
		t.Errorf("after a retry %d records, want %d", n, len(recs))
	}
	// Two compact ids of one instant list in id order.
	a, b := v7At(at.Add(time.Hour), 9), v7At(at.Add(time.Hour), 3)
	if err := s.AppendAudit(ctx, []store.AuditRecord{auditRec(a, at.Add(time.Hour), "p1"), auditRec(b, at.Add(time.Hour), "p1")}); err != nil {
		t.Fatal(err)
	}
	if ids := auditIDs(listAudit(t, s, at.Add(time.Hour), 0)); ids != b+","+a {
		t.Errorf("order = %s, want %s,%s", ids, b, a)
	}
}

func testAuditTextIDAcrossDays(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	if err := s.AppendAudit(ctx, []store.AuditRecord{auditRec("same", T0, "p1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, []store.AuditRecord{auditRec("same", T0.Add(72*time.Hour), "p2")}); err != nil {
		t.Fatal(err)
	}
	got := listAudit(t, s, time.Time{}, 0)
	if len(got) != 1 || got[0].Patient != "p1" {
		t.Errorf("got %+v, want the first record only", got)
	}
}

func testAuditArchive(t *testing.T, newStore NewAuditStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	st := newStore(t, clock)
	s, ok := st.(store.AuditArchive)
	if !ok {
		t.Skip("the store does not implement store.AuditArchive")
	}
	day0 := store.AuditDayStart(T0)
	day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	// Day 0: 3 events, day 1: 2, day 3: 1.
	var batch []store.AuditRecord
	for i, at := range []time.Time{day(0).Add(time.Hour), day(0).Add(23 * time.Hour), day(1).Add(-time.Millisecond),
		day(1), day(1).Add(5 * time.Hour), day(3).Add(time.Minute)} {
		batch = append(batch, auditRec(v7At(at, uint64(i+1)), at, "p1"))
	}
	if err := st.AppendAudit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	events, bytes, err := s.AuditUsage(ctx)
	if err != nil || events != 6 || bytes <= 0 {
		t.Fatalf("AuditUsage = %d events, %d bytes, %v; want 6 events and some bytes", events, bytes, err)
	}
	days, err := s.AuditDays(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(dayCounts(days)); got != fmt.Sprint([]string{day(0).Format(time.DateOnly) + ":3", day(1).Format(time.DateOnly) + ":2", day(3).Format(time.DateOnly) + ":1"}) {
		t.Fatalf("AuditDays = %v", got)
	}
	if _, err := s.AuditDays(ctx, day(1).Add(time.Hour)); err == nil {
		t.Error("AuditDays accepted a bound that is not a midnight")
	}
	t.Run("drop refuses unexported days", func(t *testing.T) {
		_, err := s.DropAudit(ctx, day(2))
		if !errors.Is(err, store.ErrAuditNotExported) {
			t.Fatalf("DropAudit = %v, want ErrAuditNotExported", err)
		}
		if n := len(listAudit(t, s.(store.AuditStore), time.Time{}, 0)); n != 6 {
			t.Errorf("a refused drop left %d of 6 events", n)
		}
	})
	clock.Advance(time.Minute)
	if err := s.MarkAuditExported(ctx, []store.AuditDay{{Day: day(0), Events: 3}, {Day: day(1), Events: 2}}); err != nil {
		t.Fatal(err)
	}
	days, err = s.AuditDays(ctx, day(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range days {
		if d.Exported != d.Events || !d.ExportedAt.Equal(T0.Add(time.Minute)) {
			t.Errorf("day %v: exported %d at %v, want %d at %v", d.Day, d.Exported, d.ExportedAt, d.Events, T0.Add(time.Minute))
		}
	}
	t.Run("drop refuses a day that grew after its export", func(t *testing.T) {
		late := day(1).Add(2 * time.Hour)
		if err := st.AppendAudit(ctx, []store.AuditRecord{auditRec(v7At(late, 99), late, "p9")}); err != nil {
			t.Fatal(err)
		}
		_, err := s.DropAudit(ctx, day(2))
		if !errors.Is(err, store.ErrAuditNotExported) {
			t.Fatalf("DropAudit = %v, want ErrAuditNotExported", err)
		}
		if n := len(listAudit(t, st, time.Time{}, 0)); n != 7 {
			t.Errorf("a refused drop left %d of 7 events", n)
		}
		if err := s.MarkAuditExported(ctx, []store.AuditDay{{Day: day(1), Events: 3}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("drop of exported days", func(t *testing.T) {
		dropped, err := s.DropAudit(ctx, day(2))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(dayCounts(dropped)); got != fmt.Sprint([]string{day(0).Format(time.DateOnly) + ":3", day(1).Format(time.DateOnly) + ":3"}) {
			t.Errorf("dropped %v", got)
		}
		got := listAudit(t, st, time.Time{}, 0)
		if len(got) != 1 || got[0].ID != batch[5].ID {
			t.Errorf("after the drop: %s, want %s", auditIDs(got), batch[5].ID)
		}
		if _, err := s.DropAudit(ctx, day(3).Add(time.Hour)); err == nil {
			t.Error("DropAudit accepted a bound that is not a midnight")
		}
	})
	t.Run("a dropped day can be written again", func(t *testing.T) {
		// A batch retried after the drop (a long store outage) lands in a
		// day that is gone: it is stored, and the day is unexported again.
		late := day(0).Add(3 * time.Hour)
		if err := st.AppendAudit(ctx, []store.AuditRecord{auditRec(v7At(late, 5), late, "p1")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DropAudit(ctx, day(1)); !errors.Is(err, store.ErrAuditNotExported) {
			t.Fatalf("DropAudit = %v, want ErrAuditNotExported", err)
		}
		if n := len(listAudit(t, st, time.Time{}, 0)); n != 2 {
			t.Errorf("%d events, want 2", n)
		}
	})
}

func dayCounts(days []store.AuditDay) []string {
	var out []string
	for _, d := range days {
		if d.Events > 0 {
			out = append(out, fmt.Sprintf("%s:%d", d.Day.Format(time.DateOnly), d.Events))
		}
	}
	return out
}

// LegacyAuditRecords are records as the audit trail stored them before the
// compact trail (ids made at batch time, so not at the record's instant),
// for the backends' migration tests.
func LegacyAuditRecords() []store.AuditRecord {
	a := auditRec(v7At(T0.Add(150*time.Millisecond), 42), T0, "p1")
	a.RequestID = "00ff10a0b0c0d0e0f0a0b0c0"
	b := store.AuditRecord{ID: "b-legacy", Recorded: T0.Add(25 * time.Hour), Interaction: "search-type", Status: 401, RequestID: "x.y"}
	c := auditRec(v7At(T0.Add(26*time.Hour), 43), T0.Add(26*time.Hour), "p2")
	c.Status = 404
	return []store.AuditRecord{a, b, c}
}

// CheckLegacyAudit checks that s reads LegacyAuditRecords back unchanged
// after its migration.
func CheckLegacyAudit(t *testing.T, s store.AuditStore) {
	t.Helper()
	got := listAudit(t, s, time.Time{}, 0)
	want := LegacyAuditRecords()
	if len(got) != len(want) {
		t.Fatalf("after the migration %d records, want %d", len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Recorded = w.Recorded.UTC()
		if got[i] != w {
			t.Errorf("record %d = %+v, want %+v", i, got[i], w)
		}
	}
	// New records go on beside the moved ones.
	at := T0.Add(27 * time.Hour)
	if err := s.AppendAudit(context.Background(), []store.AuditRecord{auditRec(v7At(at, 1), at, "p3")}); err != nil {
		t.Fatal(err)
	}
	if n := len(listAudit(t, s, time.Time{}, 0)); n != len(want)+1 {
		t.Errorf("%d records, want %d", n, len(want)+1)
	}
}
