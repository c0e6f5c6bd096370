package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// stmtCounter is a DB whose one transaction records the statements run
// in it: those Exec parses for the call (SQLite: prepared, run, freed) and
// those ExecStmt runs prepared once and kept (StmtExecer). audit_terms
// gets consecutive codes.
type stmtCounter struct {
	parsed, kept map[string]int
	codes        map[string]int64
}

func (c *stmtCounter) Reader() (Querier, error) { return c, nil }

func (c *stmtCounter) Write(_ context.Context, fn func(Querier) error) error { return fn(c) }

func (c *stmtCounter) Exec(_ context.Context, query string, args ...any) (int64, error) {
	if strings.HasPrefix(query, "INSERT INTO audit_terms") {
		for _, a := range args {
			if _, ok := c.codes[a.(string)]; !ok {
				c.codes[a.(string)] = int64(len(c.codes) + 1)
			}
		}
	}
	c.parsed[query]++
	return int64(len(args) / auditColCount), nil
}

func (c *stmtCounter) ExecStmt(_ context.Context, query string, args ...any) (int64, error) {
	c.kept[query]++
	return int64(len(args) / auditColCount), nil
}

func (c *stmtCounter) Query(_ context.Context, query string, args ...any) (Rows, error) {
	if !strings.HasPrefix(query, "SELECT id, term FROM audit_terms") {
		return nil, errors.New("unexpected query " + query)
	}
	r := &termRows{i: -1}
	for _, a := range args {
		r.terms = append(r.terms, a.(string))
		r.ids = append(r.ids, c.codes[a.(string)])
	}
	return r, nil
}

func (c *stmtCounter) QueryRow(context.Context, string, ...any) Row { return nil }

type termRows struct {
	i     int
	terms []string
	ids   []int64
}

func (r *termRows) Next() bool { r.i++; return r.i < len(r.terms) }
func (r *termRows) Err() error { return nil }
func (r *termRows) Close()     {}
func (r *termRows) Scan(dest ...any) error {
	*dest[0].(*int64), *dest[1].(*string) = r.ids[r.i], r.terms[r.i]
	return nil
}

// TestAuditAppendParsesNoInsert: SQLite's audit writer runs a batch of any
// size as the few INSERTs its connection keeps prepared: appending batches
// of 1 to 250 records parses no audit INSERT and keeps at most three
// (docs/design/security.md AUD-ARCH-7). It used to parse an INSERT of the
// batch's rest (up to 99 rows, 594 placeholders) for almost every batch.
func TestAuditAppendParsesNoInsert(t *testing.T) {
	c := &stmtCounter{parsed: map[string]int{}, kept: map[string]int{}, codes: map[string]int64{}}
	a := NewAuth(SQLite, c, nil, errors.New("closed"))
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	rows := 0
	for n := 1; n <= 250; n++ {
		batch := make([]store.AuditRecord, n)
		for i := range batch {
			batch[i] = store.AuditRecord{ID: fmt.Sprintf("evt-%d-%d", n, i), Recorded: at, Patient: "p1",
				ClientID: "ehr-1", Interaction: "read", Type: "Observation", ResourceID: fmt.Sprintf("o%d", i), Status: 200}
		}
		if err := a.AppendAudit(context.Background(), batch); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		rows += n
	}
	for q, k := range c.parsed {
		if strings.HasPrefix(q, "INSERT OR IGNORE INTO audit ") {
			t.Errorf("an audit INSERT of %d rows parsed %d times", strings.Count(q, "(")-1, k)
		}
	}
	kept := 0
	for q, k := range c.kept {
		kept += k * (strings.Count(q, "(") - 1)
	}
	if len(c.kept) > 3 || kept != rows {
		t.Errorf("%d prepared INSERTs carried %d rows; want at most %d statements carrying all %d rows",
			len(c.kept), kept, 3, rows)
	}
}
