package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/store"
)

// benchAuditID is the id the audit writer gives the (only) event of a
// request the gateway numbered req, recorded at at: a UUIDv7 at the event's
// millisecond whose other bits are req's (fhir/auditlog derivedV7).
func benchAuditID(at time.Time, req [12]byte) string {
	var u uuid.UUID
	copy(u[6:], req[:10])
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	u[6], u[8] = 0x70|u[6]&0x0f, 0x80|u[8]&0x3f
	return u.String()
}

// BenchAuditAppend appends the audit rows of b.N single-patient reads as
// the gateway writes them (batches of 500, a gateway request id, UUID
// resource and patient ids, 2,000 patients, 80,000 resources, a few hundred
// reads a millisecond) and reports the bytes on disk per event: usage
// returns the bytes of every audit table and index, and of the term
// dictionary among them. A first pass reads every resource once (the trail
// of a gateway that has run a while: its dictionary knows the ids);
// KETABRIDGE_BENCH_AUDIT_COLD=1 skips it.
func BenchAuditAppend(b *testing.B, s store.AuditStore, usage func() (all, terms int64)) {
	ctx := context.Background()
	ns := uuid.MustParse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
	types := []string{"Observation", "Encounter", "MedicationAdministration", "Patient", "Condition"}
	at := T0
	batch := make([]store.AuditRecord, 0, 500)
	warm := 80000
	if os.Getenv("KETABRIDGE_BENCH_AUDIT_COLD") != "" {
		warm = 0
	}
	all0, terms0 := usage()
	flush := func() {
		if len(batch) > 0 {
			if err := s.AppendAudit(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for i := range warm + b.N {
		if i == warm {
			flush()
			all0, terms0 = usage()
			b.ResetTimer()
		}
		if i%300 == 0 {
			at = at.Add(time.Millisecond)
		}
		var req [12]byte
		_, _ = rand.Read(req[:])
		batch = append(batch, store.AuditRecord{ID: benchAuditID(at, req), Recorded: at,
			Patient:  uuid.NewSHA1(ns, fmt.Appendf(nil, "p%d", i%2000)).String(),
			ClientID: "ketabridge-bench", Interaction: "read", Type: types[i%len(types)],
			ResourceID: uuid.NewSHA1(ns, fmt.Appendf(nil, "r%d", (i*7919)%80000)).String(),
			Status:     200, Purpose: "TREAT", RequestID: hex.EncodeToString(req[:])})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	b.StopTimer()
	all, terms := usage()
	b.ReportMetric(float64(all-all0)/float64(b.N), "disk-B/event")
	b.ReportMetric(float64(all-all0-(terms-terms0))/float64(b.N), "rows-B/event")
}
