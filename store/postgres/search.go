package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// Search implements store.Store.Search, whose doc states the semantics every
// backend shares (the contract suite checks them).
func (s *Store) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	if _, err := s.db(); err != nil {
		return store.SearchResult{Total: -1}, err
	}
	var (
		res        store.SearchResult
		compileErr error // the query's own error, returned as is
	)
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		// The parameters resolve to their pids in the search's own
		// snapshot (docs/design/security.md PERF-PG-5).
		key := s.paramKey(ctx, tx)
		b := sqlcore.NewBuilder(sqlcore.Postgres)
		none, err := compileWhere(b, &q, key)
		if err != nil {
			compileErr = err
			return err
		}
		if none {
			res = sqlcore.NoMatch(&q)
			return nil
		}
		where, whereArgs := b.Where(), b.Args()
		countSQL := `SELECT count(*) FROM resources r WHERE ` + where
		count := func() (n int, err error) {
			return n, tx.QueryRow(ctx, countSQL, customPlan(whereArgs)...).Scan(&n)
		}
		if q.CountOnly {
			res.Total, err = count()
			return err
		}
		order, err := b.Order(&q, key)
		if err != nil {
			return err
		}
		text := `SELECT r.id, r.version, r.last_updated, coalesce(r.patient, ''), h.body
FROM resources r JOIN history h ON h.rid = r.rid AND h.version = r.version
WHERE ` + where + ` ORDER BY ` + order + b.Page(&q)
		page, err := scanPage(ctx, tx, q.Type, text, customPlan(b.Args()))
		if err != nil {
			return err
		}
		res, err = sqlcore.Paged(&q, page, count)
		return err
	})
	if err != nil {
		if errors.Is(err, errClosed) || (compileErr != nil && err == compileErr) {
			return store.SearchResult{Total: -1}, err
		}
		return store.SearchResult{Total: -1}, fmt.Errorf("store: postgres: search: %w", err)
	}
	return res, nil
}

// customPlan prepends pgx.QueryExecModeExec to a search's arguments: the
// statement is sent unnamed, with its parameters, in one round trip, so
// PostgreSQL plans it for these values every time. A cached prepared
// statement would switch to a generic plan after five runs, and a generic
// plan cannot tell a patient's 50 Observations from a code's 100,000: it
// chose to scan the code (2 s per search instead of 2 ms, measured).
func customPlan(args []any) []any {
	return append([]any{pgx.QueryExecModeExec}, args...)
}

// scanPage runs a query selecting (id, version, last_updated, patient, body).
func scanPage(ctx context.Context, tx pgx.Tx, typ, text string, args []any) ([]store.Resource, error) {
	rows, err := tx.Query(ctx, text, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Resource
	for rows.Next() {
		r := store.Resource{Type: typ}
		var ms int64
		if err := rows.Scan(&r.ID, &r.Version, &ms, &r.Patient, &r.Body); err != nil {
			return nil, err
		}
		r.LastUpdated = sqlcore.MSTime(ms)
		out = append(out, r)
	}
	return out, rows.Err()
}

// compileWhere builds the WHERE over resources r for q. none reports that
// nothing can match (a :missing=true on _id or _lastUpdated, an access
// restriction none of whose terms can match).
func compileWhere(b *sqlcore.Builder, q *store.Query, key sqlcore.ParamKey) (bool, error) {
	res, none, err := sqlcore.Resolve(q, key)
	if err != nil || none {
		return none, err
	}
	b.And("r.type = " + b.Arg(q.Type))
	b.And(sqlcore.Postgres.NotDeleted())
	// The compartments q.Patients or the access terms hold every match to:
	// a check, and an index (resources_type_patient) the planner may drive
	// with. Many patients of the access terms alone are left to the terms'
	// own checks: as constants here the planner would estimate each one.
	comp := res.Compartments
	short := len(res.Patients) <= sqlcore.MaxInList
	if len(res.Patients) > 0 && (len(q.Patients) > 0 || short) {
		b.And(b.In("r.patient", res.Patients))
	}
	if res.AccessOnly && !short {
		comp = nil
	}
	// A token clause drives within the compartments every match is in, when
	// the query names them (idx_token_patient): the patient's resources with
	// that code, instead of all the patient's resources checked for the code.
	// The security labels' rows are not in idx_token_patient (migration
	// 0015, docs/design/security.md PERF-PG-4): a label never drives
	// within the compartments, whose own rows (resources_type_patient) do.
	driver := driverClause(res.Clauses)
	if len(comp) > 0 {
		if driver >= 0 && res.Clauses[driver].Param == securityParam {
			driver = -1
		}
		for i, cl := range res.Clauses {
			if cl.Kind == store.KindToken && cl.Missing == nil && !cl.Not && !cl.IsColumn() && cl.Param != securityParam {
				driver = i
				break
			}
		}
	}
	for i, cl := range res.Clauses {
		if i != driver {
			// Checked per candidate through its (rid, param) index.
			if err := b.Filter(cl); err != nil {
				return false, err
			}
			continue
		}
		// The driving clause: the candidates come from its index (x.pid,
		// value...) and are joined to resources.
		cond := b.ParamIs(cl.Key)
		if cl.Kind == store.KindToken && len(comp) > 0 {
			cond = b.In("x.patient", comp) + " AND " + cond
		}
		anyOf, err := b.AnyValue(cl.Clause)
		if err != nil {
			return false, err
		}
		b.And("r.rid IN (SELECT x.rid FROM " + cl.Table() + " x WHERE " + cond + " AND " + anyOf + ")")
	}
	if res.Access != nil {
		cond, err := b.Access(res.Access)
		if err != nil {
			return false, err
		}
		b.And(cond)
	}
	return false, nil
}

// securityParam is the parameter of the security labels' token rows.
const securityParam = "_security"

// driverPreference orders index kinds by how few rows a value of theirs
// usually matches: a reference names one resource, a token one code, a
// string a prefix, a date or number a range.
var driverPreference = [sqlcore.NumKinds]int{
	store.KindReference: 1,
	store.KindToken:     2,
	store.KindString:    3,
	store.KindQuantity:  4,
	store.KindNumber:    5,
	store.KindDate:      6,
}

// driverClause picks the clause whose index rows drive the search (-1:
// none, the type's resources are scanned in order): the first clause of the
// most selective kind that has values (a :missing or :not clause cannot
// drive, nor can _id or _lastUpdated, which are columns of resources).
func driverClause(cls []sqlcore.Clause) int {
	best, rank := -1, 0
	for i, cl := range cls {
		if cl.Missing != nil || cl.Not || cl.IsColumn() {
			continue
		}
		if r := driverPreference[cl.Kind]; best < 0 || r < rank {
			best, rank = i, r
		}
	}
	return best
}
