package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// Search implements store.Store.Search, whose doc states the semantics every
// backend shares (the contract suite checks them).
func (s *Store) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	res := store.SearchResult{Total: -1}
	if q.Type == "" {
		return res, errors.New("store: search: type is required")
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return res, err
	}
	defer func() { _ = tx.Rollback() }()

	w, none, err := s.compileWhere(ctx, tx, &q)
	if err != nil {
		return res, err
	}
	if none {
		if q.Total || q.CountOnly {
			res.Total = 0
		}
		return res, nil
	}
	if q.CountOnly {
		res.Total, err = s.count(ctx, tx, w)
		return res, err
	}
	text, args, err := s.pageSQL(ctx, tx, &q, w)
	if err != nil {
		return res, err
	}
	offset := max(q.Offset, 0)
	page, err := s.page(ctx, tx, q.Type, text, args)
	if err != nil {
		return res, err
	}
	if q.Count > 0 && len(page) > q.Count {
		page, res.More = page[:q.Count], true
	}
	res.Resources = page
	if q.Total {
		if !res.More && (offset == 0 || len(page) > 0) {
			res.Total = offset + len(page)
		} else if res.Total, err = s.count(ctx, tx, w); err != nil {
			return res, err
		}
	}
	return res, nil
}

// pageSQL is the query for the page of q's matches under w: Count+1 rows, to
// learn whether there is a next page.
func (s *Store) pageSQL(ctx context.Context, tx *sql.Tx, q *store.Query, w where) (string, []any, error) {
	order, orderArgs, err := s.compileOrder(ctx, tx, q)
	if err != nil {
		return "", nil, err
	}
	lim := -1
	if q.Count > 0 {
		lim = q.Count + 1
	}
	text := `SELECT r.hid, r.id, r.version, r.last_updated, coalesce(r.patient, '') FROM ` + w.from + ` WHERE ` +
		w.sql + ` ORDER BY ` + order + ` LIMIT ? OFFSET ?`
	args := make([]any, 0, len(w.args)+len(orderArgs)+2)
	args = append(append(append(args, w.args...), orderArgs...), lim, max(q.Offset, 0))
	return text, args, nil
}

// where is a compiled FROM ... WHERE over resources r.
type where struct {
	from string // "resources r", with an INDEXED BY when the driver needs one
	sql  string
	args []any
}

func (s *Store) count(ctx context.Context, tx *sql.Tx, w where) (int, error) {
	st, err := s.stmt(ctx, tx, `SELECT count(*) FROM `+w.from+` WHERE `+w.sql)
	if err != nil {
		return 0, err
	}
	var n int
	if err := st.QueryRowContext(ctx, w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: sqlite: search count: %w", err)
	}
	return n, nil
}

// page runs a query selecting (hid, id, version, last_updated, patient) and
// loads the bodies by hid.
func (s *Store) page(ctx context.Context, tx *sql.Tx, typ, text string, args []any) ([]store.Resource, error) {
	st, err := s.stmt(ctx, tx, text)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: search: %w", err)
	}
	var out []store.Resource
	var hids []int64
	for rows.Next() {
		r := store.Resource{Type: typ}
		var hid, ms int64
		if err := rows.Scan(&hid, &r.ID, &r.Version, &ms, &r.Patient); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: sqlite: search: %w", err)
		}
		r.LastUpdated = msTime(ms)
		out = append(out, r)
		hids = append(hids, hid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: search: %w", err)
	}
	if err := s.loadBodies(ctx, tx, out, hids); err != nil {
		return nil, err
	}
	return out, nil
}

// loadBodies fills out[i].Body from history row hids[i] (distinct), with
// one query per bodyChunk rows instead of one per row: a page of 50 bodies
// cost 50 statement executions, about as much as the search itself.
func (s *Store) loadBodies(ctx context.Context, tx *sql.Tx, out []store.Resource, hids []int64) error {
	at := make(map[int64]int, min(len(hids), bodyChunk))
	args := make([]any, 0, bodyChunk)
	for lo := 0; lo < len(hids); lo += bodyChunk {
		chunk := hids[lo:min(lo+bodyChunk, len(hids))]
		// Round the list up to a power of two (at least 8), padded with hid
		// 0, which no row has: a handful of statement texts to prepare.
		n := 8
		for n < len(chunk) {
			n *= 2
		}
		clear(at)
		args = args[:0]
		for i, hid := range chunk {
			at[hid] = lo + i
			args = append(args, hid)
		}
		for len(args) < n {
			args = append(args, int64(0))
		}
		st, err := s.stmt(ctx, tx, `SELECT hid, body FROM history WHERE hid IN (`+placeholders(n)+`)`)
		if err != nil {
			return fmt.Errorf("store: sqlite: load bodies: %w", err)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("store: sqlite: load bodies: %w", err)
		}
		found := 0
		for rows.Next() {
			var hid int64
			var body []byte
			if err := rows.Scan(&hid, &body); err != nil {
				rows.Close()
				return fmt.Errorf("store: sqlite: load bodies: %w", err)
			}
			if i, ok := at[hid]; ok {
				out[i].Body = body
				found++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: sqlite: load bodies: %w", err)
		}
		if found != len(chunk) {
			return fmt.Errorf("store: sqlite: load bodies: %d of %d history rows missing", len(chunk)-found, len(chunk))
		}
	}
	return nil
}

// bodyChunk is the most bodies one loadBodies query fetches.
const bodyChunk = 64

// dbStmt returns the reader pool's prepared statement for text, or nil when
// it is not prepared yet. It never waits for a connection: a caller may hold
// a pooled connection (a read transaction) while it asks, and preparing on
// the pool then would wait for a connection that callers like it hold - with
// as many concurrent readers as pool slots, forever. A miss starts one
// background prepare (it waits for a free connection holding no lock); the
// caller meanwhile prepares on its own transaction or queries the pool.
func (s *Store) dbStmt(_ context.Context, text string) (*sql.Stmt, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closed.Load() {
		return nil, errClosed
	}
	if st, ok := s.qcache[text]; ok {
		return st, nil
	}
	if len(s.qcache)+len(s.qpending) < 512 && !s.qpending[text] {
		s.qpending[text] = true
		go s.prepareShared(text)
	}
	return nil, nil
}

// prepareShared prepares text on the reader pool and adds it to the cache.
func (s *Store) prepareShared(text string) {
	st, err := s.rdb.PrepareContext(context.Background(), text)
	s.qmu.Lock()
	defer s.qmu.Unlock()
	delete(s.qpending, text)
	if err != nil {
		return // the callers prepare on their own connections and report errors
	}
	if s.closed.Load() {
		st.Close()
		return
	}
	s.qcache[text] = st
}

// stmt returns a statement for text bound to tx: the shared prepared one
// when cached, otherwise prepared on tx itself (closed with the tx).
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, text string) (*sql.Stmt, error) {
	st, err := s.dbStmt(ctx, text)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	st, err = tx.PrepareContext(ctx, text)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: prepare search: %w", err)
	}
	return st, nil
}

// clause is a resolved Clause: its index table and pid.
type clause struct {
	c     *store.Clause
	pid   int64
	table string
}

// Driver costs: a guess of the rows each kind of lookup yields per value, to
// pick the one that drives the query (the others become per-row checks).
// Date, number and quantity clauses never drive: their ranges are rarely
// selective, and a scan of the type in id order stops at the page end.
const (
	costID       = 1
	costCompCode = 10 // a token code within one patient's compartment
	costPatient  = 50
	costRef      = 100
	costExact    = 300
	costToken    = 2000
	costPrefix   = 5000
	costTypeScan = 1 << 40
)

// compileWhere builds the WHERE for q. none reports that nothing can match
// (a clause on a parameter no resource of the type was ever indexed under).
func (s *Store) compileWhere(ctx context.Context, tx *sql.Tx, q *store.Query) (where, bool, error) {
	cls := make([]clause, 0, len(q.Clauses))
	for i := range q.Clauses {
		c := &q.Clauses[i]
		if c.Missing == nil && len(c.Values) == 0 {
			return where{}, false, fmt.Errorf("store: search: %s: no values", c.Param)
		}
		if c.Param == store.ParamID || c.Param == store.ParamLastUpdated {
			if c.Missing != nil {
				if *c.Missing {
					return where{}, true, nil // always present
				}
				continue
			}
			cls = append(cls, clause{c: c})
			continue
		}
		if c.Kind < store.KindToken || c.Kind > store.KindQuantity {
			return where{}, false, fmt.Errorf("store: search: %s: unknown kind %d", c.Param, c.Kind)
		}
		pid, ok, err := s.lookupPID(ctx, tx, q.Type, c.Param)
		if err != nil {
			return where{}, false, fmt.Errorf("store: search: %w", err)
		}
		if !ok {
			if c.Missing != nil && *c.Missing {
				continue // every resource lacks it
			}
			return where{}, true, nil
		}
		cls = append(cls, clause{c: c, pid: pid, table: indexTables[c.Kind]})
	}

	// Pick the driver.
	driver, best := -1, costTypeScan // -1: type scan, -2: Patients, else clause index
	if len(q.Patients) > 0 {
		driver, best = -2, costPatient*len(q.Patients)
	}
	// A token clause drives within the compartments every match is in, when
	// the query names them (idx_token_comp): the patient's resources with
	// that code, instead of all the patient's resources checked for the code
	// or everyone's resources with the code checked for the patient.
	comp := q.Compartments()
	var driverComp []string
	for i, cl := range cls {
		if cl.c.Missing != nil {
			continue
		}
		if cl.c.Kind == store.KindToken && len(comp) > 0 && cl.c.Param != store.ParamID && cl.c.Param != store.ParamLastUpdated {
			per := costCompCode
			for _, v := range cl.c.Values {
				if v.Code == "" {
					per = costRef // the patient's rows of the parameter
				}
			}
			if cost := per * len(cl.c.Values) * len(comp); cost < best {
				driver, best, driverComp = i, cost, comp
			}
		}
		var per int
		switch {
		case cl.c.Param == store.ParamID:
			per = costID
		case cl.c.Param == store.ParamLastUpdated:
			continue
		case cl.c.Kind == store.KindReference:
			per = costRef
		case cl.c.Kind == store.KindToken:
			per = costToken
		case cl.c.Kind == store.KindString:
			per = costExact
			for _, v := range cl.c.Values {
				if !v.Exact {
					per = costPrefix
				}
			}
		default:
			continue
		}
		if cost := per * len(cl.c.Values); cost < best {
			driver, best, driverComp = i, cost, nil
		}
	}

	var b sqlBuilder
	from := "resources r"
	switch {
	case driver == -1:
		b.add("r.type = ?", q.Type)
	case driver == -2:
		// Without statistics the planner prefers the (type, id) index.
		from = "resources r INDEXED BY resources_patient"
		b.add("r.patient IN ("+placeholders(len(q.Patients))+") AND r.patient IS NOT NULL AND r.type = ?", append(stringArgs(q.Patients), q.Type)...)
	case cls[driver].c.Param == store.ParamID:
		b.add("r.type = ? AND r.id IN ("+placeholders(len(cls[driver].c.Values))+")", append([]any{q.Type}, idArgs(cls[driver].c)...)...)
	default:
		if err := b.driverIn(cls[driver], driverComp); err != nil {
			return where{}, false, err
		}
		b.add("+r.type = ?", q.Type)
	}
	b.add("r.deleted = 0")
	if len(q.Patients) > 0 && driver != -2 {
		b.add("+r.patient IN ("+placeholders(len(q.Patients))+")", stringArgs(q.Patients)...)
	}
	for i, cl := range cls {
		if i == driver {
			continue
		}
		if err := b.filter(cl); err != nil {
			return where{}, false, err
		}
	}
	return where{from: from, sql: b.sb.String(), args: b.args}, false, nil
}

// sqlBuilder joins conditions with AND, collecting their arguments in order.
type sqlBuilder struct {
	sb   strings.Builder
	args []any
}

func (b *sqlBuilder) add(cond string, args ...any) {
	if b.sb.Len() > 0 {
		b.sb.WriteString(" AND ")
	}
	b.sb.WriteString(cond)
	b.args = append(b.args, args...)
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func stringArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func idArgs(c *store.Clause) []any {
	out := make([]any, len(c.Values))
	for i, v := range c.Values {
		out[i] = v.Str
	}
	return out
}

// driverIn adds "r.rid IN (lookups by value on the index table's primary
// key)", one UNION ALL branch per value so each branch is an index range.
// With comp (token clauses only), each branch looks the value up on
// idx_token_comp within the compartments' cids: still one branch per value,
// however many patients (SQLite caps a compound SELECT at 500 terms).
func (b *sqlBuilder) driverIn(cl clause, comp []string) error {
	var sb strings.Builder
	var args []any
	sb.WriteString("r.rid IN (")
	for i, v := range cl.c.Values {
		if i > 0 {
			sb.WriteString(" UNION ALL ")
		}
		pred, pargs, err := valuePred(cl.c, v)
		if err != nil {
			return err
		}
		if len(comp) == 0 {
			sb.WriteString("SELECT x.rid FROM " + cl.table + " x WHERE x.pid = ? AND " + pred)
			args = append(append(args, cl.pid), pargs...)
			continue
		}
		sb.WriteString("SELECT x.rid FROM idx_token x INDEXED BY idx_token_comp WHERE x.cid IN (SELECT cid FROM compartments WHERE patient IN (" +
			placeholders(len(comp)) + ")) AND x.pid = ? AND " + pred)
		args = append(append(append(args, stringArgs(comp)...), cl.pid), pargs...)
	}
	sb.WriteString(")")
	b.add(sb.String(), args...)
	return nil
}

// filter adds a per-resource check for cl.
func (b *sqlBuilder) filter(cl clause) error {
	c := cl.c
	switch c.Param {
	case store.ParamID:
		b.add("+r.id IN ("+placeholders(len(c.Values))+")", idArgs(c)...)
		return nil
	case store.ParamLastUpdated:
		var parts []string
		var args []any
		for _, v := range c.Values {
			p, a, err := datePred(v, "r.last_updated", "r.last_updated")
			if err != nil {
				return fmt.Errorf("store: search: %s: %w", c.Param, err)
			}
			parts = append(parts, p)
			args = append(args, a...)
		}
		b.add("("+strings.Join(parts, " OR ")+")", args...)
		return nil
	}
	sub := "SELECT 1 FROM " + cl.table + " x INDEXED BY " + cl.table + "_rid WHERE x.rid = r.rid AND x.pid = ?"
	if c.Missing != nil {
		if *c.Missing {
			b.add("NOT EXISTS ("+sub+")", cl.pid)
		} else {
			b.add("EXISTS ("+sub+")", cl.pid)
		}
		return nil
	}
	parts := make([]string, 0, len(c.Values))
	args := []any{cl.pid}
	for _, v := range c.Values {
		p, a, err := valuePred(c, v)
		if err != nil {
			return err
		}
		parts = append(parts, p)
		args = append(args, a...)
	}
	b.add("EXISTS ("+sub+" AND ("+strings.Join(parts, " OR ")+"))", args...)
	return nil
}

// maxString sorts after every string with the same prefix (U+10FFFF is the
// largest code point, and UTF-8 byte order is code point order).
const maxString = "\U0010FFFF"

// valuePred is the condition one Value puts on an index row x.
func valuePred(c *store.Clause, v store.Value) (string, []any, error) {
	switch c.Kind {
	case store.KindToken:
		switch {
		case v.AnySystem && v.Code == "":
			return "1", nil, nil
		case v.AnySystem:
			return "x.code = ?", []any{v.Code}, nil
		case v.Code == "":
			return "x.system = ?", []any{v.System}, nil
		default:
			return "x.code = ? AND x.system = ?", []any{v.Code, v.System}, nil
		}
	case store.KindString:
		n := store.NormalizeString(v.Str)
		if v.Exact {
			return "x.value = ?", []any{n}, nil
		}
		return "x.value >= ? AND x.value < ?", []any{n, n + maxString}, nil
	case store.KindReference:
		return "x.target = ?", []any{v.Str}, nil
	case store.KindDate:
		p, a, err := datePred(v, "x.lo", "x.hi")
		if err != nil {
			return "", nil, fmt.Errorf("store: search: %s: %w", c.Param, err)
		}
		return p, a, nil
	case store.KindNumber, store.KindQuantity:
		p, a, err := numPred(v, "x.num")
		if err != nil {
			return "", nil, fmt.Errorf("store: search: %s: %w", c.Param, err)
		}
		if c.Kind == store.KindQuantity {
			if v.System != "" {
				p += " AND x.system = ?"
				a = append(a, v.System)
			}
			if v.Code != "" {
				p += " AND x.code = ?"
				a = append(a, v.Code)
			}
		}
		return "(" + p + ")", a, nil
	}
	return "", nil, fmt.Errorf("store: search: %s: unknown kind %d", c.Param, c.Kind)
}

// datePred compares a resource range [lo, hi] (column expressions) with the
// value range [v.Lo, v.Hi] per search.html#date.
func datePred(v store.Value, lo, hi string) (string, []any, error) {
	eq := "(" + lo + " >= ? AND " + hi + " <= ?)"
	switch v.Prefix {
	case store.Eq, "":
		return eq, []any{v.Lo, v.Hi}, nil
	case store.Ne:
		return "NOT " + eq, []any{v.Lo, v.Hi}, nil
	case store.Gt:
		return hi + " > ?", []any{v.Hi}, nil
	case store.Lt:
		return lo + " < ?", []any{v.Lo}, nil
	case store.Ge:
		return "(" + hi + " > ? OR " + eq + ")", []any{v.Hi, v.Lo, v.Hi}, nil
	case store.Le:
		return "(" + lo + " < ? OR " + eq + ")", []any{v.Lo, v.Lo, v.Hi}, nil
	case store.Sa:
		return lo + " > ?", []any{v.Hi}, nil
	case store.Eb:
		return hi + " < ?", []any{v.Lo}, nil
	}
	return "", nil, fmt.Errorf("unknown prefix %q", v.Prefix)
}

// numPred compares column col with v.Num per v.Prefix.
func numPred(v store.Value, col string) (string, []any, error) {
	op := ""
	switch v.Prefix {
	case store.Eq, "":
		op = "="
	case store.Ne:
		op = "<>"
	case store.Gt, store.Sa:
		op = ">"
	case store.Lt, store.Eb:
		op = "<"
	case store.Ge:
		op = ">="
	case store.Le:
		op = "<="
	default:
		return "", nil, fmt.Errorf("unknown prefix %q", v.Prefix)
	}
	return col + " " + op + " ?", []any{v.Num}, nil
}

// sortColumn is the index column a parameter of a kind sorts by, ascending
// and descending.
func sortColumn(k store.IndexKind, desc bool) string {
	switch k {
	case store.KindToken:
		return "code"
	case store.KindString:
		return "value"
	case store.KindDate:
		if desc {
			return "hi"
		}
		return "lo"
	case store.KindReference:
		return "target"
	default:
		return "num"
	}
}

// compileOrder builds the ORDER BY for q; r.id always ends it, so the order
// is total and pages are stable.
func (s *Store) compileOrder(ctx context.Context, tx *sql.Tx, q *store.Query) (string, []any, error) {
	var parts []string
	var args []any
	for _, so := range q.Sort {
		dir := " ASC"
		agg := "min"
		if so.Desc {
			dir, agg = " DESC", "max"
		}
		switch so.Param {
		case store.ParamID:
			parts = append(parts, "r.id"+dir)
			continue
		case store.ParamLastUpdated:
			parts = append(parts, "r.last_updated"+dir)
			continue
		}
		if so.Kind < store.KindToken || so.Kind > store.KindQuantity {
			return "", nil, fmt.Errorf("store: search: sort %s: unknown kind %d", so.Param, so.Kind)
		}
		pid, ok, err := s.lookupPID(ctx, tx, q.Type, so.Param)
		if err != nil {
			return "", nil, fmt.Errorf("store: search: %w", err)
		}
		if !ok {
			continue // no resource has a value: the key orders nothing
		}
		t := indexTables[so.Kind]
		parts = append(parts, "(SELECT "+agg+"(x."+sortColumn(so.Kind, so.Desc)+") FROM "+t+" x INDEXED BY "+t+
			"_rid WHERE x.rid = r.rid AND x.pid = ?)"+dir+" NULLS LAST")
		args = append(args, pid)
	}
	hasID := false
	for _, so := range q.Sort {
		hasID = hasID || so.Param == store.ParamID
	}
	if !hasID {
		// Insertion order (the rowid): stable for paging, and the order in
		// which a driver's index range yields candidates, so SQLite walks
		// them and stops at the page end instead of probing and sorting all.
		parts = append(parts, "r.rid")
	}
	return strings.Join(parts, ", "), args, nil
}
