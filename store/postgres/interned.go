package postgres

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// interned is a table of small integer ids for texts repeated in every
// index row: the token systems (token_systems, migration 0015,
// docs/design/security.md PERF-PG-4) and the search parameters' names
// (search_params, migration 0016, PERF-PG-5). An id never changes and is
// never removed, so the ids are cached for the store's life, copied on
// write under mu. mu is never held across a statement: a search holds a
// pool connection (its transaction) while it resolves a name, so a lock
// held by an Apply waiting for a connection to intern would deadlock a
// pool of waiting searches (storetest Concurrency found it).
type interned struct {
	// what names the table in errors; insert and lookup are its
	// statements: insert interns the texts of a text[] ($1), lookup reads
	// the (text, id) pairs of those among $1 that are stored.
	what, insert, lookup string

	ids atomic.Pointer[map[string]int32]
	mu  sync.Mutex
}

// newSystems interns token_systems.system (PERF-PG-4).
func newSystems() *interned {
	return &interned{what: "token systems",
		insert: `INSERT INTO token_systems (system) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (system) DO NOTHING`,
		lookup: `SELECT system, sid FROM token_systems WHERE system = ANY($1::text[])`}
}

// newParams interns search_params.name (PERF-PG-5).
func newParams() *interned {
	return &interned{what: "search parameters",
		insert: `INSERT INTO search_params (name) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (name) DO NOTHING`,
		lookup: `SELECT name, pid FROM search_params WHERE name = ANY($1::text[])`}
}

// known is the cache (never nil).
func (in *interned) known() map[string]int32 {
	if m := in.ids.Load(); m != nil {
		return *m
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if m := in.ids.Load(); m != nil {
		return *m
	}
	m := map[string]int32{}
	in.ids.Store(&m)
	return m
}

// intern returns the cache with every text of missing in it, interning
// those not stored yet on pool (each statement committed at once).
// Concurrent replicas interning the same text meet on its unique key and
// read the one row: the INSERT waits for a concurrent one of the same text
// to commit, and the SELECT, a statement of its own, then sees every row.
func (in *interned) intern(ctx context.Context, pool *pgxpool.Pool, missing []string) (map[string]int32, error) {
	known := in.known()
	if len(missing) == 0 {
		return known, nil
	}
	if _, err := pool.Exec(ctx, in.insert, missing); err != nil {
		return nil, fmt.Errorf("%s: %w", in.what, err)
	}
	next, err := in.read(ctx, pool, missing)
	if err != nil {
		return nil, err
	}
	for _, text := range missing {
		if _, ok := next[text]; !ok {
			return nil, fmt.Errorf("%s: a text was not interned", in.what)
		}
	}
	return next, nil
}

// queryer is a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// read adds to the cache those of texts that are stored, as q sees them,
// and returns it. The statement runs without mu; only the copy-on-write
// merge into the cache holds it (an id never changes, so merges of
// concurrent reads agree).
func (in *interned) read(ctx context.Context, q queryer, texts []string) (map[string]int32, error) {
	rows, err := q.Query(ctx, in.lookup, texts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.what, err)
	}
	found := make(map[string]int32, len(texts))
	var (
		text string
		id   int32
	)
	if _, err := pgx.ForEachRow(rows, []any{&text, &id}, func() error {
		found[text] = id
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: %w", in.what, err)
	}
	in.known() // the cache exists
	in.mu.Lock()
	defer in.mu.Unlock()
	next := maps.Clone(*in.ids.Load())
	maps.Copy(next, found)
	in.ids.Store(&next)
	return next, nil
}

// find returns text's id as q sees it: from the cache, else read with q
// (and cached when found). ok is false when text is not stored: nothing
// indexed ever named it, as of q's snapshot.
func (in *interned) find(ctx context.Context, q queryer, text string) (id int32, ok bool, err error) {
	if id, ok := in.known()[text]; ok {
		return id, true, nil
	}
	next, err := in.read(ctx, q, []string{text})
	if err != nil {
		return 0, false, err
	}
	id, ok = next[text]
	return id, ok, nil
}

// internNames returns the ids of the token systems and of the search
// parameters every index row of records names, interning those not stored
// yet. It runs before Apply's transaction, on connections of its own and
// committed at once: a text interned by a batch that then fails matches
// nothing, which is what a search for one never stored answers anyway. A
// batch of known texts costs map lookups only.
func (s *Store) internNames(ctx context.Context, pool *pgxpool.Pool, records []store.RecordWrite) (sids, pids map[string]int32, err error) {
	systems, params := s.systems.known(), s.params.known()
	var missingSys, missingParams []string
	seen := map[string]bool{}
	for i := range records {
		for j := range records[i].Resources {
			for k := range records[i].Resources[j].Index {
				row := &records[i].Resources[j].Index[k]
				if _, ok := params[row.Param]; !ok && !seen["p"+row.Param] {
					seen["p"+row.Param] = true
					missingParams = append(missingParams, row.Param)
				}
				// A patient or subject row may be stored combined with
				// the other (PERF-PG-8).
				if row.Kind == store.KindReference && pairedParam(row.Param) && !seen["p"+patientSubject] {
					if _, ok := params[patientSubject]; !ok {
						seen["p"+patientSubject] = true
						missingParams = append(missingParams, patientSubject)
					}
				}
				if row.Kind != store.KindToken {
					continue
				}
				if _, ok := systems[row.System]; !ok && !seen["s"+row.System] {
					seen["s"+row.System] = true
					missingSys = append(missingSys, row.System)
				}
			}
		}
	}
	if sids, err = s.systems.intern(ctx, pool, missingSys); err != nil {
		return nil, nil, err
	}
	if pids, err = s.params.intern(ctx, pool, missingParams); err != nil {
		return nil, nil, err
	}
	return sids, pids, nil
}

// paramKey resolves search parameters to their pids as q sees them
// (sqlcore.ParamKey; q is the search's transaction, so its snapshot is the
// search's): a name no index row ever had matches nothing. The pid is a
// constant of the statement, so the planner sees it (and proves
// idx_token_patient's predicate from it), as it saw the name.
func (s *Store) paramKey(ctx context.Context, q queryer) sqlcore.ParamKey {
	// patient and subject also match their combined rows (PERF-PG-8).
	return func(name string) (any, bool, error) {
		return s.paramKeys(name, func(n string) (int32, bool, error) { return s.params.find(ctx, q, n) })
	}
}
