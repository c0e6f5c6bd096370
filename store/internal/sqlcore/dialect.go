// Package sqlcore is what the two SQL backends, store/sqlite and
// store/postgres, do identically (docs/design/architecture.md): search
// predicates, sort keys, the resolution of a query's clauses, the decisions
// of a write (what a record changes, which version a resource gets), and
// the auth and audit queries with their row scanning. What differs between
// the two SQL dialects is a Dialect value; what differs between the drivers
// (database/sql and pgx) each backend adapts to Querier.
//
// Each backend keeps what is fast for its engine: how a search is driven
// (the query plans differ), how index rows are written (SQLite's buffered
// multi-row inserts on its one writer connection, PostgreSQL's arrays and
// pipelined batches), how bodies are loaded.
package sqlcore

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// Dialect is what differs between the SQL the two backends run.
type Dialect struct {
	// Name names the backend in error messages ("store: <Name>: ...").
	Name string
	// numbered: placeholders are $1, $2, ... instead of ?.
	numbered bool
	// arrays: a list of strings is one text[] parameter (col = ANY($n),
	// text[] columns) instead of a placeholder per element (col IN (?, ?))
	// and JSON text in columns.
	arrays bool
	// notDeleted is the condition "r is not deleted": deleted is an integer
	// on SQLite, a boolean on PostgreSQL.
	notDeleted string
	// numCast follows a number parameter, typing it as the index tables'
	// num column (double precision on PostgreSQL).
	numCast string
	// noLimit is the LIMIT argument that means no limit.
	noLimit any
	// ridIndex names the index of per-resource lookups in an index table:
	// without statistics, SQLite may otherwise search the primary key.
	ridIndex bool
	// existsFence ends a per-resource EXISTS: OFFSET 0 keeps PostgreSQL from
	// turning each EXISTS into a semi-join (with one join per clause,
	// planning cost more than running: 7 ms against 1.4 ms for patient +
	// code + two dates).
	existsFence string
	// checkOnly prefixes a column a condition only checks: SQLite's unary +
	// keeps the planner from driving the query through the column's index.
	checkOnly string
	// paramCol is the index tables' column naming the parameter: an
	// interned pid on both (SQLite's params; PostgreSQL's search_params,
	// docs/design/security.md PERF-PG-5).
	paramCol string
	// tokenSystems: idx_token names a row's system by sid, a token_systems
	// row (SQLite, docs/design/architecture.md PERF-SQLB-2; PostgreSQL,
	// docs/design/security.md PERF-PG-4), instead of holding the text.
	tokenSystems bool
	// refRIDs: a reference row whose target "Type/id" was stored when the
	// row was written holds the target's rid (an integer) instead of the
	// text, and any other target as text (SQLite, docs/design/security.md
	// PERF-SQLB-4): a value matches either form, and a target read back is
	// the text (RefTarget).
	refRIDs bool
	// refTRID: a reference row holds a stored target's rid in its trid
	// column (target '') and any other target's text in target (trid 0):
	// PostgreSQL's columns have one type each (docs/design/security.md
	// PERF-PG-6); a value matches either form, as with refRIDs.
	refTRID bool

	// historyRowid: history rows have their own rowid (hid), and
	// resources.hid names the current version's; else a history row is
	// found by (rid, version).
	historyRowid bool
	// exportIndex follows "resources r" in an export's walk, and
	// exportCond is a condition of its WHERE: SQLite is told the (type,
	// rid) index, partial on "version > 0" (every row) so that searches,
	// which never state it, do not take it for their id order.
	exportIndex, exportCond string
	// lateral: an export joins the version at the snapshot laterally.
	lateral bool

	// Shared statements in the dialect's placeholder style (init).
	historyHead, history string
}

// init writes the dialect's shared statements.
func (d *Dialect) init() *Dialect {
	d.historyHead = d.SQL(`SELECT rid, version FROM resources WHERE type = ? AND id = ?`)
	d.history = d.SQL(`SELECT version, last_updated, deleted, coalesce(patient, ''), body
FROM history WHERE rid = ? ORDER BY version DESC LIMIT ? OFFSET ?`)
	return d
}

// SQLite is the dialect of store/sqlite (modernc.org/sqlite).
var SQLite = (&Dialect{
	Name:       "sqlite",
	notDeleted: "r.deleted = 0",
	noLimit:    -1,
	ridIndex:   true,
	checkOnly:  "+",
	paramCol:   "pid",

	tokenSystems: true,
	refRIDs:      true,

	historyRowid: true,
	exportIndex:  " INDEXED BY resources_type_rid",
	exportCond:   "r.version > 0",
}).init()

// Postgres is the dialect of store/postgres (pgx).
var Postgres = (&Dialect{
	Name:        "postgres",
	numbered:    true,
	arrays:      true,
	notDeleted:  "NOT r.deleted",
	numCast:     "::double precision",
	noLimit:     nil, // LIMIT NULL
	existsFence: " OFFSET 0",
	paramCol:    "pid",
	lateral:     true,

	tokenSystems: true,
	refTRID:      true,
}).init()

// SQL returns query, written with ? placeholders, in d's placeholder style.
// Queries contain no ? other than placeholders.
func (d *Dialect) SQL(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			b.WriteString(query)
			return b.String()
		}
		n++
		b.WriteString(query[:i])
		b.WriteString("$" + strconv.Itoa(n))
		query = query[i+1:]
	}
}

// placeholder is the n-th (from 1) placeholder of a statement.
func (d *Dialect) placeholder(n int) string {
	if d.numbered {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// Limit maps a page size to a LIMIT argument (count <= 0: no limit).
func (d *Dialect) Limit(count int) any {
	if count <= 0 {
		return d.noLimit
	}
	return count
}

// NotDeleted is the condition "resource r is not deleted".
func (d *Dialect) NotDeleted() string { return d.notDeleted }

// list returns the parameter storing a list of strings in a list column.
func (d *Dialect) list(l []string) (any, error) {
	if l == nil {
		l = []string{}
	}
	if d.arrays {
		return l, nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// listDest returns the scan destination of a list column read into *l.
func (d *Dialect) listDest(l *[]string) any {
	if d.arrays {
		return l
	}
	return jsonList{l}
}

// jsonList scans a JSON array of strings (SQLite's list columns).
type jsonList struct{ l *[]string }

// Scan implements sql.Scanner.
func (j jsonList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return errNotList
	}
	return json.Unmarshal(b, j.l)
}

// NumKinds bounds store.IndexKind values (1..KindQuantity).
const NumKinds = int(store.KindQuantity) + 1

// IndexTables names the index table of each kind; both schemas use them.
var IndexTables = [NumKinds]string{
	store.KindToken:     "idx_token",
	store.KindString:    "idx_string",
	store.KindDate:      "idx_date",
	store.KindReference: "idx_ref",
	store.KindNumber:    "idx_number",
	store.KindQuantity:  "idx_quantity",
}
