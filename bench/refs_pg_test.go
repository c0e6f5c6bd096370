package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// TestReferenceAnswersPostgresMatchSQLite: the bench's synthetic patients
// ingested into PostgreSQL (reference targets kept as rids where stored,
// docs/design/security.md PERF-PG-6) and into SQLite (the same by its own
// layout, PERF-SQLB-4) give the same answers to every reference search
// their rows allow (each type, parameter and target stored, and the first
// three targets of each with :not), to a sort by each reference parameter both ways, and to
// _include's Refs of every resource. KETABRIDGE_TEST_DATABASE_URL; skipped
// without it.
func TestReferenceAnswersPostgresMatchSQLite(t *testing.T) {
	url := os.Getenv("KETABRIDGE_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("KETABRIDGE_TEST_DATABASE_URL not set")
	}
	raw, err := server.SynthRecords(2, 1, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, drop, err := postgres.NewSchema(ctx, url, fmt.Sprintf("kb_refanswers_%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	pg, err := postgres.Open(ctx, u, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "refs.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	m := mapping.New(mapping.Options{})
	for _, st := range []store.Store{pg, lite} {
		svc := ingest.New(st, m, search.Extract, store.SystemClock{})
		for j := 0; j < len(raw); j += ingestBatch {
			if _, sum, err := svc.Ingest(ctx, raw[j:min(j+ingestBatch, len(raw))]); err != nil || sum.Rejected > 0 {
				t.Fatalf("ingest: %v, %d rejected", err, sum.Rejected)
			}
		}
	}
	// Every (type, parameter, target) of the reference rows, and every
	// resource's key, read from PostgreSQL (a combined patient and subject
	// row, PERF-PG-8, stands for one row of each).
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	type triple struct{ typ, param, target string }
	rows, err := c.Query(ctx, `SELECT DISTINCT r.type, p.name,
    CASE WHEN x.trid <> 0 THEN (SELECT t.type || '/' || t.id FROM resources t WHERE t.rid = x.trid) ELSE x.target END
FROM idx_ref x JOIN resources r ON r.rid = x.rid
JOIN (SELECT pid, name FROM search_params WHERE name <> 'patient|subject'
    UNION ALL SELECT c.pid, v.name FROM search_params c CROSS JOIN (VALUES ('patient'), ('subject')) AS v(name)
    WHERE c.name = 'patient|subject') p ON p.pid = x.pid ORDER BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	triples, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (triple, error) {
		var tr triple
		return tr, row.Scan(&tr.typ, &tr.param, &tr.target)
	})
	if err != nil {
		t.Fatal(err)
	}
	var asRID, asText int
	if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE trid <> 0), count(*) FILTER (WHERE trid = 0) FROM idx_ref`).Scan(&asRID, &asText); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reference rows as rids, %d as text; %d distinct (type, parameter, target)", asRID, asText, len(triples))
	if len(triples) < 50 || asRID == 0 || asText == 0 {
		t.Fatalf("%d triples, %d rid rows: the data set does not exercise the reference rows", len(triples), asRID)
	}
	answer := func(st store.Store, q store.Query) string {
		t.Helper()
		res, err := st.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(res.Resources))
		for i, r := range res.Resources {
			ids[i] = r.ID
		}
		return fmt.Sprintf("%d: %s", res.Total, strings.Join(ids, ","))
	}
	same := func(what string, q store.Query) {
		t.Helper()
		if a, b := answer(pg, q), answer(lite, q); a != b {
			t.Errorf("%s: PostgreSQL %s\nSQLite %s", what, a, b)
		}
	}
	seen := map[[2]string]int{} // the targets of each type and parameter so far
	for _, tr := range triples {
		cl := store.Clause{Param: tr.param, Kind: store.KindReference, Values: []store.Value{{Str: tr.target}}}
		same(tr.typ+"?"+tr.param+"="+tr.target, store.Query{Type: tr.typ, Clauses: []store.Clause{cl}, Count: 1000})
		k := [2]string{tr.typ, tr.param}
		seen[k]++
		if seen[k] <= 3 {
			cl.Not = true
			same(tr.typ+"?"+tr.param+":not="+tr.target, store.Query{Type: tr.typ, Clauses: []store.Clause{cl}, Count: 1000})
		}
		if seen[k] == 1 {
			for _, desc := range []bool{false, true} {
				same(fmt.Sprintf("%s?_sort=%s desc %v", tr.typ, tr.param, desc),
					store.Query{Type: tr.typ, Sort: []store.Sort{{Param: tr.param, Kind: store.KindReference, Desc: desc}}, Count: 1000})
			}
		}
	}
	rows, err = c.Query(ctx, `SELECT type, id FROM resources ORDER BY rid`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Key, error) {
		var k store.Key
		return k, row.Scan(&k.Type, &k.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(keys, 200) {
		a, err := pg.Refs(ctx, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := lite.Refs(ctx, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("Refs of %d resources: PostgreSQL %d refs, SQLite %d, first difference at %d", len(chunk), len(a), len(b), firstDiff(a, b))
		}
	}
}

func firstDiff(a, b []store.Ref) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
