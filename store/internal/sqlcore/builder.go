package sqlcore

import "strings"

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

// In is the condition "col is one of vals": one array parameter, or a
// placeholder per value.
func (b *Builder) In(col string, vals []string) string {
	if b.d.arrays {
		return col + " = ANY(" + b.Arg(vals) + "::text[])"
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

// CheckOnly marks col as only checked, never a way into the query (see
// Dialect.checkOnly).
func (b *Builder) CheckOnly(col string) string { return b.d.checkOnly + col }
