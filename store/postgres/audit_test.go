package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// v7 is a UUIDv7 at at's millisecond with random bits n: the writer's form
// of id, stored compact.
func v7(at time.Time, n uint64) string {
	ms := uint64(at.UnixMilli())
	return fmt.Sprintf("%08x-%04x-7%03x-%04x-%012x", ms>>16, ms&0xffff, n>>52&0xfff, 0x8000|(n>>36&0x3fff), n&0xffffffffffff)
}

func packRec(id string, at time.Time, n int) store.AuditRecord {
	return store.AuditRecord{ID: id, Recorded: at.UTC(), Patient: fmt.Sprintf("p%d", n%7), ClientID: "ehr-1",
		Interaction: "read", Type: "Observation", ResourceID: fmt.Sprintf("obs-%d", n%11), Status: 200,
		Purpose: "TREAT", RequestID: fmt.Sprintf("%024x", n)}
}

// TestAuditPacks: a batch is stored as one audit_packs row per second it
// spans (docs/design/security.md AUD-ARCH-6), and ListAudit pages through
// packs that overlap in time (several batches in one second, more packs in
// one second than one query reads) exactly as through the sorted events.
func TestAuditPacks(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s := openSchema(t, url)
	defer s.Close()
	c := connect(t, url)
	var all []store.AuditRecord
	n := 0
	add := func(batch []store.AuditRecord) {
		t.Helper()
		if err := s.AppendAudit(ctx, batch); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	// 200 events in one second, then 100 interleaved with them and 50 in
	// the next second: three packs.
	var b1, b2 []store.AuditRecord
	for i := range 200 {
		b1 = append(b1, packRec(v7(storetest.T0.Add(time.Duration(i*4)*time.Millisecond), uint64(n)), storetest.T0.Add(time.Duration(i*4)*time.Millisecond), n))
		n++
	}
	for i := range 150 {
		at := storetest.T0.Add(time.Duration(1+i*7) * time.Millisecond)
		b2 = append(b2, packRec(v7(at, uint64(n)), at, n))
		n++
	}
	b2[7].ID = "a-text-id" // an id stored as text
	add(b1)
	add(b2)
	var packs, events int
	if err := c.QueryRow(ctx, `SELECT count(*), coalesce(sum(n), 0) FROM audit_packs`).Scan(&packs, &events); err != nil {
		t.Fatal(err)
	}
	if packs != 3 || events != 350 {
		t.Errorf("%d packs of %d events, want 3 of 350", packs, events)
	}
	// 70 two-event batches in one second (more packs than one query
	// reads), then 70 in seconds of their own.
	for i := range 140 {
		at := storetest.T0.Add(5 * time.Second).Add(time.Duration(i%70) * time.Millisecond)
		if i >= 70 {
			at = storetest.T0.Add(time.Duration(i) * time.Second)
		}
		add([]store.AuditRecord{packRec(v7(at, uint64(n)), at, n), packRec(v7(at, uint64(n+1)), at, n+1)})
		n += 2
	}
	// A retried batch stores nothing new.
	add(nil)
	if err := s.AppendAudit(ctx, b2[:40]); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(all, func(a, b store.AuditRecord) int {
		if c := a.Recorded.Compare(b.Recorded); c != 0 {
			return c
		}
		// Within a millisecond: text ids first, then the compact keys,
		// in the order of their text (the same bytes).
		if (a.ID == "a-text-id") != (b.ID == "a-text-id") {
			if a.ID == "a-text-id" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, since := range []time.Time{{}, storetest.T0.Add(3 * time.Millisecond), storetest.T0.Add(5*time.Second + 30*time.Millisecond), storetest.T0.Add(100 * time.Second)} {
		var want []store.AuditRecord
		for _, r := range all {
			if !r.Recorded.Before(since) {
				want = append(want, r)
			}
		}
		for _, limit := range []int{0, 1, 5, 64, 129, 200, 351, 480, 1000} {
			got, err := s.ListAudit(ctx, since, limit)
			if err != nil {
				t.Fatal(err)
			}
			w := want
			if limit > 0 && len(w) > limit {
				w = w[:limit]
			}
			if len(got) != len(w) {
				t.Fatalf("since %v limit %d: %d records, want %d", since, limit, len(got), len(w))
			}
			for i := range w {
				if got[i] != w[i] {
					t.Fatalf("since %v limit %d: record %d = %+v, want %+v", since, limit, i, got[i], w[i])
				}
			}
		}
	}
}

// TestMigrationKeepsAuditRows: the events stored as rows before migration
// 0014 stay readable beside the packs written after it, in one order; a
// retried id stored as a row is skipped; the days count both; and dropping
// an exported day drops both.
func TestMigrationKeepsAuditRows(t *testing.T) {
	ctx := context.Background()
	s, url := openLegacyAuditSchema(t)
	defer s.Close()
	var rows int
	if err := connect(t, url).QueryRow(ctx, `SELECT count(*) FROM audit`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	legacy := storetest.LegacyAuditRecords() // at T0, T0+25h, T0+26h
	if rows != len(legacy) {
		t.Fatalf("audit holds %d rows, want the %d before the migration", rows, len(legacy))
	}
	// New events between and after the rows, and the rows' ids again
	// (compact and text) with other contents: skipped.
	at1, at2 := storetest.T0.Add(time.Millisecond), storetest.T0.Add(25*time.Hour+time.Second)
	n1, n2 := packRec(v7(at1, 1), at1, 1), packRec(v7(at2, 2), at2, 2)
	again := []store.AuditRecord{legacy[1], legacy[2]}
	for i := range again {
		again[i].Patient = "someone-else"
	}
	if err := s.AppendAudit(ctx, append([]store.AuditRecord{n2, n1}, again...)); err != nil {
		t.Fatal(err)
	}
	want := []store.AuditRecord{legacy[0], n1, legacy[1], n2, legacy[2]}
	for i := range want {
		want[i].Recorded = want[i].Recorded.UTC()
	}
	for _, limit := range []int{0, 1, 2, 3, 4} {
		got, err := s.ListAudit(ctx, time.Time{}, limit)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if limit > 0 {
			w = w[:limit]
		}
		if !slices.Equal(got, w) {
			t.Errorf("limit %d: got %+v, want %+v", limit, got, w)
		}
	}
	day := store.AuditDayStart(storetest.T0)
	days, err := s.AuditDays(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || !days[0].Day.Equal(day) || days[0].Events != 2 || days[1].Events != 3 {
		t.Fatalf("AuditDays = %+v, want 2 events on %s and 3 on the next day", days, day)
	}
	if err := s.MarkAuditExported(ctx, days[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DropAudit(ctx, day.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListAudit(ctx, time.Time{}, 0); err != nil || !slices.Equal(got, want[2:]) {
		t.Errorf("after the drop: %+v, %v; want %+v", got, err, want[2:])
	}
}
