package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// Refs implements store.Store.Refs, whose doc states the semantics.
func (s *Store) Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	if len(from) == 0 {
		return nil, nil
	}
	pool, err := s.db()
	if err != nil {
		return nil, err
	}
	types, ids := uniqueKeys(from)
	var paramArg any // NULL: every param
	if len(params) > 0 {
		paramArg = params
	}
	// The rows name their parameter by pid (docs/design/security.md
	// PERF-PG-5): the names are joined back, and order the answer as
	// before.
	// A target kept as its rid (PERF-PG-6) is read back as its
	// "Type/id", the text it was written from. A combined patient and
	// subject row (PERF-PG-8) is read back as the two rows it stands for.
	rows, err := pool.Query(ctx, `SELECT k.type, k.id, p.name, coalesce(t.type || '/' || t.id, x.target) AS target
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(type, id, ord)
JOIN resources r ON r.type = k.type AND r.id = k.id AND NOT r.deleted
JOIN idx_ref x ON x.rid = r.rid
JOIN (SELECT pid, name FROM search_params WHERE name <> '`+patientSubject+`'
	UNION ALL SELECT c.pid, v.name FROM search_params c CROSS JOIN (VALUES ('`+patientParam+`'), ('`+subjectParam+`')) AS v(name)
	WHERE c.name = '`+patientSubject+`') p ON p.pid = x.pid
LEFT JOIN resources t ON x.trid <> 0 AND t.rid = x.trid
WHERE $3::text[] IS NULL OR p.name = ANY($3::text[])
ORDER BY k.ord, p.name, 4`, types, ids, paramArg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: refs: %w", err)
	}
	defer rows.Close()
	var out []store.Ref
	for rows.Next() {
		var k store.Key
		var name, target string
		if err := rows.Scan(&k.Type, &k.ID, &name, &target); err != nil {
			return nil, fmt.Errorf("store: postgres: refs: %w", err)
		}
		typ, id, ok := strings.Cut(target, "/")
		if !ok || typ == "" || id == "" || strings.Contains(id, "/") {
			continue
		}
		out = append(out, store.Ref{From: k, Param: name, Target: store.Key{Type: typ, ID: id}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: refs: %w", err)
	}
	return out, nil
}

// Everything implements store.Store.Everything, whose doc states the
// semantics.
func (s *Store) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	if q.Patient == "" {
		return nil, 0, errors.New("store: everything: patient is required")
	}
	if _, err := s.db(); err != nil {
		return nil, 0, err
	}
	var (
		out        []store.Resource
		total      int
		compileErr error // the query's own error, returned as is
	)
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		// The access terms' parameters resolve to their pids in this
		// snapshot (docs/design/security.md PERF-PG-5).
		key := s.paramKey(ctx, tx)
		terms, none, err := sqlcore.ResolveEverything(&q, func(string) sqlcore.ParamKey { return key })
		if err != nil {
			compileErr = err
			return err
		}
		if none {
			return nil
		}
		b := sqlcore.NewBuilder(sqlcore.Postgres)
		b.Everything(&q)
		if terms != nil {
			cond, err := b.Access(terms)
			if err != nil {
				compileErr = err
				return err
			}
			b.And(cond)
		}
		where, whereArgs := b.Where(), b.Args()
		text := `SELECT r.type, r.id, r.version, r.last_updated, h.body
FROM resources r JOIN history h ON h.rid = r.rid AND h.version = r.version
WHERE ` + where + b.EverythingOrder(&q)
		rows, err := tx.Query(ctx, text, b.Args()...)
		if err != nil {
			return err
		}
		for rows.Next() {
			r := store.Resource{Patient: q.Patient}
			var ms int64
			if err := rows.Scan(&r.Type, &r.ID, &r.Version, &ms, &r.Body); err != nil {
				rows.Close()
				return err
			}
			r.LastUpdated = sqlcore.MSTime(ms)
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		total, err = sqlcore.EverythingTotal(&q, len(out), func() (n int, err error) {
			return n, tx.QueryRow(ctx, `SELECT count(*) FROM resources r WHERE `+where, whereArgs...).Scan(&n)
		})
		return err
	})
	if err != nil {
		if errors.Is(err, errClosed) || (compileErr != nil && err == compileErr) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("store: postgres: everything: %w", err)
	}
	return out, total, nil
}
