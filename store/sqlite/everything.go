package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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
	// A target stored as its resource's rid (PERF-SQLB-4) is read back as
	// its "Type/id" once the wanted rows are known (resolveRIDs): looking
	// it up in the query cost a resources lookup for every reference of
	// the resources, wanted or not.
	type pending struct {
		k store.Key
		i int
	}
	var byRID map[int64][]pending
	err = s.eachIDChunk(ctx, tx, from, `SELECT r.id, p.name, x.target
FROM resources r
CROSS JOIN idx_ref x INDEXED BY idx_ref_rid ON x.rid = r.rid
JOIN params p ON p.pid = x.pid
WHERE r.type = ? AND r.id IN (%s) AND r.deleted = 0`, func(typ string, rows *sql.Rows) error {
		var id, name string
		var target any
		if err := rows.Scan(&id, &name, &target); err != nil {
			return err
		}
		if len(want) > 0 && !want[name] {
			return nil
		}
		k := store.Key{Type: typ, ID: id}
		switch t := target.(type) {
		case int64:
			if byRID == nil {
				byRID = map[int64][]pending{}
			}
			byRID[t] = append(byRID[t], pending{k, len(byKey[k])})
			byKey[k] = append(byKey[k], store.Ref{From: k, Param: name})
		case string:
			ttyp, tid, ok := sqlcore.RefKey(t)
			if !ok {
				return nil
			}
			byKey[k] = append(byKey[k], store.Ref{From: k, Param: name, Target: store.Key{Type: ttyp, ID: tid}})
		default:
			return fmt.Errorf("reference target of type %T", target)
		}
		return nil
	})
	if err == nil && len(byRID) > 0 {
		err = resolveRIDs(ctx, s, tx, byRID, func(p pending, target store.Key) { byKey[p.k][p.i].Target = target })
	}
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: refs: %w", err)
	}
	// Each source's refs ordered by param, then target as text, as when
	// every target was text.
	for _, refs := range byKey {
		slices.SortFunc(refs, func(a, b store.Ref) int {
			if c := strings.Compare(a.Param, b.Param); c != 0 {
				return c
			}
			return strings.Compare(a.Target.Type+"/"+a.Target.ID, b.Target.Type+"/"+b.Target.ID)
		})
	}
	var out []store.Ref
	for _, k := range from {
		out = append(out, byKey[k]...)
		delete(byKey, k) // each key once
	}
	return out, nil
}

// resolveRIDs looks up the "Type/id" of each rid in byRID (reference
// targets stored as rids, PERF-SQLB-4) and calls set for each of its
// pendings: a query per idChunk rids. A rid naming no resource is an
// error (the writer never stores one, and resources rows are never
// deleted).
func resolveRIDs[P any](ctx context.Context, s *Store, tx *sql.Tx, byRID map[int64][]P, set func(P, store.Key)) error {
	rids := make([]int64, 0, len(byRID))
	for rid := range byRID {
		rids = append(rids, rid)
	}
	slices.Sort(rids)
	args := make([]any, 0, idChunk)
	found := 0
	for lo := 0; lo < len(rids); lo += idChunk {
		chunk := rids[lo:min(lo+idChunk, len(rids))]
		// Padded to a power of two (at least 8) with rid 0, which no
		// resource has: a handful of statement texts.
		n := 8
		for n < len(chunk) {
			n *= 2
		}
		args = args[:0]
		for _, rid := range chunk {
			args = append(args, rid)
		}
		for len(args) < n {
			args = append(args, int64(0))
		}
		st, err := s.stmt(ctx, tx, `SELECT rid, type, id FROM resources WHERE rid IN (`+placeholders(n)+`)`)
		if err != nil {
			return err
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var rid int64
			var k store.Key
			if err := rows.Scan(&rid, &k.Type, &k.ID); err != nil {
				rows.Close()
				return err
			}
			for _, p := range byRID[rid] {
				set(p, k)
			}
			found++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
	}
	if found != len(rids) {
		return fmt.Errorf("%d reference targets name no resource", len(rids)-found)
	}
	return nil
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
