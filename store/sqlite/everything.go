package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// Refs implements store.Store.Refs, whose doc states the semantics.
func (s *Store) Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error) {
	if len(from) == 0 {
		return nil, nil
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	want := make(map[string]bool, len(params))
	for _, p := range params {
		want[p] = true
	}
	byKey := make(map[store.Key][]store.Ref, len(from))
	// A target stored as its resource's rid reads back as its "Type/id"
	// (PERF-SQLB-4), and orders as that text.
	err = s.eachIDChunk(ctx, tx, from, `SELECT r.id, p.name, `+sqlcore.SQLite.RefTarget("x.target")+` AS target
FROM resources r
CROSS JOIN idx_ref x INDEXED BY idx_ref_rid ON x.rid = r.rid
JOIN params p ON p.pid = x.pid
WHERE r.type = ? AND r.id IN (%s) AND r.deleted = 0
ORDER BY r.id, p.name, 3`, func(typ string, rows *sql.Rows) error {
		var id, name, target string
		if err := rows.Scan(&id, &name, &target); err != nil {
			return err
		}
		if len(want) > 0 && !want[name] {
			return nil
		}
		ttyp, tid, ok := strings.Cut(target, "/")
		if !ok || ttyp == "" || tid == "" || strings.Contains(tid, "/") {
			return nil
		}
		k := store.Key{Type: typ, ID: id}
		byKey[k] = append(byKey[k], store.Ref{From: k, Param: name, Target: store.Key{Type: ttyp, ID: tid}})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: refs: %w", err)
	}
	var out []store.Ref
	for _, k := range from {
		out = append(out, byKey[k]...)
		delete(byKey, k) // each key once
	}
	return out, nil
}

// eachIDChunk runs text (a query with "r.type = ?" and "r.id IN (%s)") for
// the distinct keys, one query per type and idChunk ids, calling fn for each
// row: a few queries instead of one per key.
func (s *Store) eachIDChunk(ctx context.Context, tx *sql.Tx, keys []store.Key, text string, fn func(typ string, rows *sql.Rows) error) error {
	var types []string
	ids := make(map[string][]string)
	seen := make(map[store.Key]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := ids[k.Type]; !ok {
			types = append(types, k.Type)
		}
		ids[k.Type] = append(ids[k.Type], k.ID)
	}
	args := make([]any, 0, 1+idChunk)
	for _, typ := range types {
		all := ids[typ]
		for lo := 0; lo < len(all); lo += idChunk {
			chunk := all[lo:min(lo+idChunk, len(all))]
			// Padded to a power of two (at least 8) with the empty id, which
			// no resource has: a handful of statement texts.
			n := 8
			for n < len(chunk) {
				n *= 2
			}
			args = append(args[:0], typ)
			for _, id := range chunk {
				args = append(args, id)
			}
			for len(args) < n+1 {
				args = append(args, "")
			}
			st, err := s.stmt(ctx, tx, fmt.Sprintf(text, placeholders(n)))
			if err != nil {
				return err
			}
			rows, err := st.QueryContext(ctx, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				if err := fn(typ, rows); err != nil {
					rows.Close()
					return err
				}
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// idChunk is the most ids one eachIDChunk query asks for.
const idChunk = 64

// Everything implements store.Store.Everything, whose doc states the
// semantics.
func (s *Store) Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error) {
	if q.Patient == "" {
		return nil, 0, errors.New("store: everything: patient is required")
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = tx.Rollback() }()

	terms, none, err := sqlcore.ResolveEverything(&q, func(typ string) sqlcore.ParamKey { return s.paramKey(ctx, tx, typ) })
	if err != nil || none {
		return nil, 0, err
	}
	b := sqlcore.NewBuilder(sqlcore.SQLite)
	b.Everything(&q)
	if terms != nil {
		cond, err := b.Access(terms)
		if err != nil {
			return nil, 0, err
		}
		b.And(cond)
	}
	// (type, id) order, the Patient first; the compartment is small, so the
	// sort is cheap. The Patient-first term defeats the index's order, so
	// SQLite visits (and looks up the row of) every match to sort them
	// whatever the page; the query therefore has no LIMIT and the loop
	// keeps the page and counts the rest, which is the total: no second
	// pass of the same lookups to count them (PERF-SQLB-3; a default-paged
	// $everything of ~870 resources spent a fifth of its time in that
	// count).
	const from = "resources r INDEXED BY resources_patient"
	text := `SELECT r.hid, r.type, r.id, r.version, r.last_updated FROM ` + from + ` WHERE ` + b.Where() + b.EverythingSort(&q)
	args := b.Args()
	st, err := s.stmt(ctx, tx, text)
	if err != nil {
		return nil, 0, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: sqlite: everything: %w", err)
	}
	offset := max(q.Offset, 0)
	// Sized for the page up front: grown by doubling, a 500-resource page's
	// slices were about twice their final size in garbage (PERF-ST-11).
	var out []store.Resource
	var hids []int64
	if q.Count > 0 {
		out, hids = make([]store.Resource, 0, min(q.Count, 1024)), make([]int64, 0, min(q.Count, 1024))
	}
	total := 0
	for rows.Next() {
		total++
		if total <= offset || (q.Count > 0 && len(out) == q.Count) {
			continue // outside the page: counted, not read
		}
		r := store.Resource{Patient: q.Patient}
		var hid, ms int64
		if err := rows.Scan(&hid, &r.Type, &r.ID, &r.Version, &ms); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("store: sqlite: everything: %w", err)
		}
		r.LastUpdated = sqlcore.MSTime(ms)
		out = append(out, r)
		hids = append(hids, hid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: sqlite: everything: %w", err)
	}
	if len(out) == 0 {
		out = nil // an empty page is nil, as before the slices were sized
	}
	if err := s.loadBodies(ctx, tx, out, hids); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}
