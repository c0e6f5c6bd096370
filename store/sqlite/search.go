package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// Search implements store.Store.Search, whose doc states the semantics every
// backend shares (the contract suite checks them).
func (s *Store) Search(ctx context.Context, q store.Query) (store.SearchResult, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return store.SearchResult{Total: -1}, err
	}
	defer func() { _ = tx.Rollback() }()

	w, none, err := s.compileWhere(ctx, tx, &q)
	if err != nil {
		return store.SearchResult{Total: -1}, err
	}
	if none {
		return sqlcore.NoMatch(&q), nil
	}
	count := func() (int, error) { return s.count(ctx, tx, w) }
	if q.CountOnly {
		n, err := count()
		return store.SearchResult{Total: n}, err
	}
	text, args, err := s.pageSQL(ctx, tx, &q, w)
	if err != nil {
		return store.SearchResult{Total: -1}, err
	}
	page, err := s.page(ctx, tx, q.Type, text, args)
	if err != nil {
		return store.SearchResult{Total: -1}, err
	}
	return sqlcore.Paged(&q, page, count)
}

// pageSQL is the query for the page of q's matches under w: Count+1 rows, to
// learn whether there is a next page.
func (s *Store) pageSQL(ctx context.Context, tx *sql.Tx, q *store.Query, w where) (string, []any, error) {
	order, err := w.b.Order(q, s.paramKey(ctx, tx, q.Type))
	if err != nil {
		return "", nil, err
	}
	text := `SELECT r.hid, r.id, r.version, r.last_updated, coalesce(r.patient, '') FROM ` + w.from + ` WHERE ` +
		w.sql + ` ORDER BY ` + order + w.b.Page(q)
	return text, w.b.Args(), nil
}

// where is a compiled FROM ... WHERE over resources r.
type where struct {
	from string // "resources r", with an INDEXED BY when the driver needs one
	sql  string
	args []any
	b    *sqlcore.Builder // what built it, to continue the page query with
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
		r.LastUpdated = sqlcore.MSTime(ms)
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
//
// Under a store.Lease (ctx) the bodies are copied into chunks lent for the
// request instead of a new slice per row (lend.go, docs/design/security.md
// PERF-ST-21).
func (s *Store) loadBodies(ctx context.Context, tx *sql.Tx, out []store.Resource, hids []int64) error {
	if len(hids) == 0 {
		return nil
	}
	at := make(map[int64]int, min(len(hids), bodyChunk))
	args := make([]any, 0, bodyChunk+1)
	sink := newSink(ctx)
	if sink != nil {
		defer sink.close()
	}
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
		if sink != nil {
			args = append(args, sink.n)
		}
		for i, hid := range chunk {
			at[hid] = lo + i
			args = append(args, hid)
		}
		for pad := n - len(chunk); pad > 0; pad-- {
			args = append(args, int64(0))
		}
		var found int
		var err error
		if sink != nil {
			found, err = s.lendBodies(ctx, tx, sink, out, at, n, args)
		} else {
			found, err = s.copyBodies(ctx, tx, out, at, n, args)
		}
		if err != nil {
			return err
		}
		if found != len(chunk) {
			return fmt.Errorf("store: sqlite: load bodies: %d of %d history rows missing", len(chunk)-found, len(chunk))
		}
	}
	return nil
}

// copyBodies runs one query of loadBodies without a Lease: each body as the
// driver copied it.
func (s *Store) copyBodies(ctx context.Context, tx *sql.Tx, out []store.Resource, at map[int64]int, n int, args []any) (int, error) {
	// CAST(body AS BLOB): every value reaches the driver as a BLOB,
	// which modernc.org/sqlite hands over as a slice of its own (see
	// below); a no-op for the bodies as written (BLOBs).
	st, err := s.stmt(ctx, tx, `SELECT hid, CAST(body AS BLOB) FROM history WHERE hid IN (`+placeholders(n)+`)`)
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var hid int64
		// The body is kept as the driver returned it, not copied again
		// by database/sql (Scan into a []byte clones it): the driver
		// (modernc.org/sqlite, rows.Next) copies each BLOB out of
		// SQLite into a new slice per row, so the RawBytes stay valid
		// after the next row (database/sql only promises that much
		// until Next; TestLoadedBodiesOwnTheirMemory pins it for the
		// driver version in go.mod). A 500-resource $everything page
		// was 650 KB of bodies allocated twice (PERF-ST-11).
		var body sql.RawBytes
		if err := rows.Scan(&hid, &body); err != nil {
			return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
		}
		if i, ok := at[hid]; ok {
			out[i].Body = []byte(body)[:len(body):len(body)]
			found++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	return found, nil
}

// lendBodies runs one query of loadBodies under a Lease: the SQL function
// lendBodyFunc copies each body into sink's lent chunks (lend.go,
// docs/design/security.md PERF-ST-21); args[0] is the sink's number.
func (s *Store) lendBodies(ctx context.Context, tx *sql.Tx, sink *bodySink, out []store.Resource, at map[int64]int, n int, args []any) (int, error) {
	st, err := s.stmt(ctx, tx, `SELECT `+lendBodyFunc+`(?, hid, CAST(body AS BLOB)) FROM history WHERE hid IN (`+placeholders(n)+`)`)
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	sink.reset()
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: sqlite: load bodies: %w", err)
	}
	found := 0
	for j, hid := range sink.hids {
		if i, ok := at[hid]; ok {
			out[i].Body = sink.bodies[j]
			found++
		}
	}
	return found, nil
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
		s.prepares.Add(1)
		go s.prepareShared(text)
	}
	return nil, nil
}

// prepareShared prepares text on the reader pool and adds it to the cache.
func (s *Store) prepareShared(text string) {
	defer s.prepares.Done()
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

// Drivers other than a clause (an index into the resolved clauses).
const (
	driveTypeScan = -1 // the type's resources in insertion order
	drivePatients = -2 // the resources of the compartments q is restricted to
)

// paramKey resolves a parameter of typ to its pid, as a reader sees them.
func (s *Store) paramKey(ctx context.Context, q queryer, typ string) sqlcore.ParamKey {
	return func(name string) (any, bool, error) {
		pid, ok, err := s.lookupPID(ctx, q, typ, name)
		return pid, ok, err
	}
}

// compileWhere builds the WHERE for q. none reports that nothing can match
// (a clause on a parameter no resource of the type was ever indexed under,
// an access restriction none of whose terms can match).
func (s *Store) compileWhere(ctx context.Context, tx *sql.Tx, q *store.Query) (where, bool, error) {
	res, none, err := sqlcore.Resolve(q, s.paramKey(ctx, tx, q.Type))
	if err != nil || none {
		return where{}, none, err
	}
	driver, comp := pickDriver(&res)
	b := sqlcore.NewBuilder(sqlcore.SQLite)
	from, err := drive(b, q, &res, driver, comp)
	if err != nil {
		return where{}, false, err
	}
	b.And(sqlcore.SQLite.NotDeleted())
	// res.Patients from the access terms alone needs no check of its own:
	// the terms check their patients.
	if len(q.Patients) > 0 && driver != drivePatients {
		b.And(b.In(b.CheckOnly("r.patient"), res.Patients))
	}
	for i, cl := range res.Clauses {
		if i == driver {
			continue
		}
		if err := b.Filter(cl); err != nil {
			return where{}, false, err
		}
	}
	if res.Access != nil {
		cond, err := b.Access(res.Access)
		if err != nil {
			return where{}, false, err
		}
		b.And(cond)
	}
	return where{from: from, sql: b.Where(), args: b.Args(), b: b}, false, nil
}

// pickDriver picks what yields the candidates of a resolved query at the
// lowest guessed cost: a clause (its index in res.Clauses), the type's
// resources or those of res.Patients. comp is set when a token clause
// drives within the compartments every match is in (idx_token_comp): the
// patient's resources with that code, instead of all the patient's
// resources checked for the code or everyone's resources with the code
// checked for the patient.
func pickDriver(res *sqlcore.Resolved) (driver int, comp []string) {
	driver, best := driveTypeScan, costTypeScan
	if len(res.Patients) > 0 {
		driver, best = drivePatients, costPatient*len(res.Patients)
	}
	qcomp := res.Compartments
	for i, cl := range res.Clauses {
		if cl.Missing != nil || cl.Not {
			continue
		}
		if cl.Kind == store.KindToken && len(qcomp) > 0 && !cl.IsColumn() && cl.Param != securityParam {
			per := costCompCode
			for _, v := range cl.Values {
				if v.Code == "" {
					per = costRef // the patient's rows of the parameter
				}
			}
			if cost := per * len(cl.Values) * len(qcomp); cost < best {
				driver, best, comp = i, cost, qcomp
			}
		}
		if cost := driverCost(cl); cost < best {
			driver, best, comp = i, cost, nil
		}
	}
	return driver, comp
}

// driverCost is the guessed cost of cl driving a query on its own.
func driverCost(cl sqlcore.Clause) int {
	var per int
	switch {
	case cl.Param == store.ParamID:
		per = costID
	case cl.Param == store.ParamLastUpdated:
		return costTypeScan
	case cl.Kind == store.KindReference:
		per = costRef
	case cl.Kind == store.KindToken:
		per = costToken
	case cl.Kind == store.KindString:
		per = costExact
		for _, v := range cl.Values {
			if !v.Exact {
				per = costPrefix
			}
		}
	default:
		return costTypeScan
	}
	return per * len(cl.Values)
}

// drive adds the conditions through which driver yields the candidates and
// returns the FROM they need.
func drive(b *sqlcore.Builder, q *store.Query, res *sqlcore.Resolved, driver int, comp []string) (string, error) {
	switch {
	case driver == driveTypeScan:
		b.And("r.type = " + b.Arg(q.Type))
	case driver == drivePatients:
		b.And(b.In("r.patient", res.Patients) + " AND r.patient IS NOT NULL AND r.type = " + b.Arg(q.Type))
		// Without statistics the planner prefers the (type, id) index.
		return "resources r INDEXED BY resources_patient", nil
	case res.Clauses[driver].Param == store.ParamID:
		b.And(b.IDs(q.Type, res.Clauses[driver].Clause))
	default:
		in, err := driverIn(b, res.Clauses[driver], comp)
		if err != nil {
			return "", err
		}
		b.And(in)
		b.And(b.CheckOnly("r.type") + " = " + b.Arg(q.Type))
	}
	return "resources r", nil
}

// driverIn is "r.rid IN (lookups by value on the index table's primary
// key)", one UNION ALL branch per value so each branch is an index range.
// With comp (token clauses only), each branch looks the value up on
// idx_token_comp within the compartments' cids: still one branch per value,
// however many patients (SQLite caps a compound SELECT at 500 terms).
func driverIn(b *sqlcore.Builder, cl sqlcore.Clause, comp []string) (string, error) {
	var sb strings.Builder
	sb.WriteString("r.rid IN (")
	for i, v := range cl.Values {
		if i > 0 {
			sb.WriteString(" UNION ALL ")
		}
		if len(comp) == 0 {
			sb.WriteString("SELECT x.rid FROM " + cl.Table() + " x WHERE " + b.ParamIs(cl.Key) + " AND ")
		} else {
			sb.WriteString("SELECT x.rid FROM idx_token x INDEXED BY idx_token_comp WHERE x.cid IN (SELECT cid FROM compartments WHERE " +
				b.In("patient", comp) + ") AND " + b.ParamIs(cl.Key) + " AND ")
		}
		pred, err := b.ValuePred(cl.Clause, v)
		if err != nil {
			return "", err
		}
		sb.WriteString(pred)
	}
	sb.WriteString(")")
	return sb.String(), nil
}

// placeholders is a list of n ? placeholders.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
