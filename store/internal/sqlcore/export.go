package sqlcore

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// Export reads one page of a snapshot (store.ExportQuery) with the same SQL
// on both backends. The version at q.At is the history row of the highest
// version stamped at or before At: history is append-only, so the answer
// never changes once At has passed, and a page needs no long transaction.
// It walks the (type, id) unique index in id order, one page per query.
func Export(ctx context.Context, d *Dialect, db Querier, q *store.ExportQuery, key ParamKey) ([]store.Resource, error) {
	if q.Type == "" || q.At.IsZero() || q.Count <= 0 {
		return nil, errors.New("store: export: type, at and count are required")
	}
	b := NewBuilder(d)
	b.And("r.type = " + b.Arg(q.Type))
	if q.After != "" {
		b.And("r.id > " + b.Arg(q.After))
	}
	b.And(`h.version = (SELECT h2.version FROM history h2 WHERE h2.rid = r.rid AND h2.last_updated <= ` +
		b.Arg(q.At.UnixMilli()) + ` ORDER BY h2.version DESC LIMIT 1)`)
	if q.Since.IsZero() {
		b.And(strings.Replace(d.notDeleted, "r.", "h.", 1))
	} else {
		b.And("h.last_updated > " + b.Arg(q.Since.UnixMilli()))
	}
	if len(q.Patients) > 0 {
		b.And(b.InCheck("h.patient", q.Patients))
	}
	if len(q.IDs) > 0 {
		ids := slices.Clone(q.IDs)
		slices.Sort(ids)
		b.And(b.In(b.CheckOnly("r.id"), slices.Compact(ids)))
	}
	for _, a := range []*store.Access{q.Filters, q.Access} {
		if a == nil {
			continue
		}
		terms, open, _, err := resolveAccess(a.Terms, q.Type, nil, key)
		if err != nil {
			return nil, err
		}
		if open {
			continue
		}
		if len(terms) == 0 {
			return nil, nil // no term can match this type
		}
		cond, err := b.Access(terms)
		if err != nil {
			return nil, err
		}
		b.And(cond)
	}
	text := `SELECT r.id, h.version, h.last_updated, h.deleted, coalesce(h.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid
WHERE ` + b.Where() + ` ORDER BY r.id LIMIT ` + b.Arg(q.Count)
	rows, err := db.Query(ctx, text, b.Args()...)
	if err != nil {
		return nil, d.wrap("export", err)
	}
	defer rows.Close()
	out := make([]store.Resource, 0, min(q.Count, 1024))
	for rows.Next() {
		r := store.Resource{Type: q.Type}
		var ms int64
		if err := rows.Scan(&r.ID, &r.Version, &ms, &r.Deleted, &r.Patient, &r.Body); err != nil {
			return nil, d.wrap("export", err)
		}
		r.LastUpdated = MSTime(ms)
		if r.Deleted {
			r.Body = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("export", err)
	}
	return out, nil
}
