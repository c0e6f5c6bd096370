package sqlite_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// benchAuditID is the id the audit writer gives an event recorded at at: a
// UUIDv7 at the event's millisecond (fhir/auditlog newV7At).
func benchAuditID(at time.Time) string {
	var u uuid.UUID
	_, _ = rand.Read(u[6:])
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	u[6], u[8] = 0x70|u[6]&0x0f, 0x80|u[8]&0x3f
	return u.String()
}

// BenchmarkAuditAppend appends the audit rows of b.N single-patient reads
// as the gateway writes them (batches of 500, a gateway request id, UUID
// resource and patient ids, 2,000 patients, 80,000 resources, reads a few
// hundred a millisecond) and reports the bytes on disk per event (dbstat
// over the audit tables and indexes: docs/benchmarks.md), after a first
// pass over every resource (KETABRIDGE_BENCH_AUDIT_COLD=1 skips it).
func BenchmarkAuditAppend(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "audit.db")
	s, err := sqlite.Open(ctx, path, storetest.NewFakeClock(storetest.T0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ns := uuid.MustParse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
	types := []string{"Observation", "Encounter", "MedicationAdministration", "Patient", "Condition"}
	at := storetest.T0
	batch := make([]store.AuditRecord, 0, 500)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// All audit tables, and without the term dictionary (whose size is
	// bounded by the distinct ids, not the reads).
	usage := func() (all, terms int64) {
		if err := db.QueryRowContext(ctx, `SELECT coalesce(sum(pgsize), 0),
  coalesce(sum(CASE WHEN name LIKE '%audit_terms%' THEN pgsize END), 0) FROM dbstat
WHERE name LIKE 'audit%' OR name LIKE 'sqlite_autoindex_audit%'`).Scan(&all, &terms); err != nil {
			b.Fatal(err)
		}
		return all, terms
	}
	// A first pass reads every resource once (the trail of a gateway that
	// has run a while: its dictionary knows the ids); the measured reads
	// follow.
	warm := 80000
	if os.Getenv("KETABRIDGE_BENCH_AUDIT_COLD") != "" {
		warm = 0
	}
	all0, terms0 := usage()
	for i := range warm + b.N {
		if i == warm {
			if len(batch) > 0 {
				if err := s.AppendAudit(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
			all0, terms0 = usage()
			b.ResetTimer()
		}
		if i%300 == 0 {
			at = at.Add(time.Millisecond)
		}
		var req [12]byte
		_, _ = rand.Read(req[:])
		batch = append(batch, store.AuditRecord{ID: benchAuditID(at), Recorded: at,
			Patient:  uuid.NewSHA1(ns, fmt.Appendf(nil, "p%d", i%2000)).String(),
			ClientID: "ketabridge-bench", Interaction: "read", Type: types[i%len(types)],
			ResourceID: uuid.NewSHA1(ns, fmt.Appendf(nil, "r%d", (i*7919)%80000)).String(),
			Status:     200, Purpose: "TREAT", RequestID: hex.EncodeToString(req[:])})
		if len(batch) == cap(batch) || i == warm+b.N-1 {
			if err := s.AppendAudit(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.StopTimer()
	all, terms := usage()
	if testing.Verbose() {
		var payload, unused, cells, pages int64
		_ = db.QueryRowContext(ctx, `SELECT sum(payload), sum(unused), sum(ncell), count(*) FROM dbstat WHERE name = 'audit'`).Scan(&payload, &unused, &cells, &pages)
		b.Logf("audit: %d pages, %d cells, payload %d, unused %d", pages, cells, payload, unused)
	}
	b.ReportMetric(float64(all-all0)/float64(b.N), "disk-B/event")
	b.ReportMetric(float64(all-all0-(terms-terms0))/float64(b.N), "rows-B/event")
}
