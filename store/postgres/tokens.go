package postgres

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketabridge/ketabridge/store"
)

// internSystems returns the ids of the token systems (token_systems,
// migration 0015, docs/design/security.md PERF-PG-4) every token row of
// records names, interning those not stored yet. It runs before Apply's
// transaction, on a connection of its own and committed at once: a system
// is a few bytes of a URI, never removed, and one interned by a batch that
// then fails matches nothing, which is what a search for a system never
// stored answers anyway. The ids are cached for the store's life (a
// system's id never changes), so a batch of known systems costs map
// lookups only; concurrent replicas interning the same system meet on its
// unique key and read the one row.
func (s *Store) internSystems(ctx context.Context, pool *pgxpool.Pool, records []store.RecordWrite) (map[string]int32, error) {
	known := s.knownSystems()
	var missing []string
	seen := map[string]bool{}
	for i := range records {
		for j := range records[i].Resources {
			for k := range records[i].Resources[j].Index {
				row := &records[i].Resources[j].Index[k]
				if row.Kind != store.KindToken {
					continue
				}
				if _, ok := known[row.System]; !ok && !seen[row.System] {
					seen[row.System] = true
					missing = append(missing, row.System)
				}
			}
		}
	}
	if len(missing) == 0 {
		return known, nil
	}
	s.sidMu.Lock()
	defer s.sidMu.Unlock()
	// The INSERT waits for a concurrent one of the same system to commit;
	// the SELECT, a statement of its own, then sees every row.
	if _, err := pool.Exec(ctx, `INSERT INTO token_systems (system) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (system) DO NOTHING`, missing); err != nil {
		return nil, fmt.Errorf("token systems: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT system, sid FROM token_systems WHERE system = ANY($1::text[])`, missing)
	if err != nil {
		return nil, fmt.Errorf("token systems: %w", err)
	}
	next := maps.Clone(*s.sids.Load())
	var (
		system string
		sid    int32
	)
	if _, err := pgx.ForEachRow(rows, []any{&system, &sid}, func() error {
		next[system] = sid
		return nil
	}); err != nil {
		return nil, fmt.Errorf("token systems: %w", err)
	}
	for _, sys := range missing {
		if _, ok := next[sys]; !ok {
			return nil, fmt.Errorf("token systems: a system was not interned")
		}
	}
	s.sids.Store(&next)
	return next, nil
}

// knownSystems is the cache of interned token systems (never nil).
func (s *Store) knownSystems() map[string]int32 {
	if m := s.sids.Load(); m != nil {
		return *m
	}
	s.sidMu.Lock()
	defer s.sidMu.Unlock()
	if m := s.sids.Load(); m != nil {
		return *m
	}
	m := map[string]int32{}
	s.sids.Store(&m)
	return m
}
