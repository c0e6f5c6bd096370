package sqlcore

import (
	"encoding/json"
	"strings"
)

// MaxInList is the longest list In writes with a placeholder per value
// (SQLite), and InCheck as a plain array (PostgreSQL); a longer one is one
// parameter SQL turns into a table. A payer's thousands of patients would
// otherwise be, on SQLite, as many parameters to bind on every search (up
// to its limit of 32,766 in a statement) and a statement text per list
// length (one JSON array, json_each, measured equal or faster from 150
// values on); on PostgreSQL, constants whose selectivity the planner
// estimates one by one (6 ms of planning for 2,000 patients, against 0.2
// for a hashed subplan of the array).
const MaxInList = 32

// Builder collects the conditions of a WHERE, joined with AND, and the
// arguments of a statement in placeholder order. Arguments keep numbering
// across the conditions and what follows them (ORDER BY, LIMIT), so a
// statement is built in the order its text reads.
type Builder struct {
	d    *Dialect
	sb   strings.Builder
	args []any
}

// NewBuilder returns an empty Builder for d.
func NewBuilder(d *Dialect) *Builder { return &Builder{d: d} }

// Arg adds an argument and returns its placeholder.
func (b *Builder) Arg(v any) string {
	b.args = append(b.args, v)
	return b.d.placeholder(len(b.args))
}

// And adds a condition.
func (b *Builder) And(cond string) {
	if b.sb.Len() > 0 {
		b.sb.WriteString(" AND ")
	}
	b.sb.WriteString(cond)
}

// Where is the conditions added so far, joined with AND.
func (b *Builder) Where() string { return b.sb.String() }

// Args is every argument added so far.
func (b *Builder) Args() []any { return b.args }

// In is the condition "col is one of vals": one array parameter
// (PostgreSQL), a placeholder per value, or for more than maxInList values
// one JSON array parameter (SQLite's json_each).
func (b *Builder) In(col string, vals []string) string {
	if b.d.arrays {
		return col + " = ANY(" + b.Arg(vals) + "::text[])"
	}
	if len(vals) > MaxInList {
		j, _ := json.Marshal(vals)
		return col + " IN (SELECT value FROM json_each(" + b.Arg(string(j)) + "))"
	}
	var sb strings.Builder
	sb.WriteString(col)
	sb.WriteString(" IN (")
	for i, v := range vals {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(b.Arg(v))
	}
	sb.WriteString(")")
	return sb.String()
}

// InCheck is the condition "col is one of vals" checked on each row,
// never a way into the query: In of CheckOnly(col), except that a long
// list is a hashed subplan on PostgreSQL (see MaxInList).
func (b *Builder) InCheck(col string, vals []string) string {
	if b.d.arrays && len(vals) > MaxInList {
		return col + " IN (SELECT unnest(" + b.Arg(vals) + "::text[]))"
	}
	return b.In(b.CheckOnly(col), vals)
}

// CheckOnly marks col as only checked, never a way into the query (see
// Dialect.checkOnly).
func (b *Builder) CheckOnly(col string) string { return b.d.checkOnly + col }
