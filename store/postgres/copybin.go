package postgres

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// The set-based writer's COPY rows in PostgreSQL's binary COPY format, built
// here (docs/design/security.md PERF-PG-7) instead of by pgx's CopyFrom: the
// columns' types are the schema's and fixed, so each value is appended as
// its wire form by its Go type, where pgx first asked the server for the
// columns' types (a prepared SELECT of the columns: one round trip and one
// parse per table per run) and then looked up an encode plan for every
// value. The bytes on the wire are those pgx sent: the same header, the
// same big-endian integers and float bits, text and bytea as their bytes,
// NULL as length -1; the server decodes and checks them as before (text
// against the database encoding).

// colType is a column's type in the schema.
type colType uint8

const (
	colInt4 colType = iota + 1
	colInt8
	colText
	colBytea
	colBool
	colFloat8
)

// copyTable is a table's columns as the writer copies them.
type copyTable struct {
	name  string
	cols  []string
	types []colType
	sql   string // the COPY statement
}

func newCopyTable(name string, cols []string, types []colType) *copyTable {
	if len(cols) != len(types) {
		panic("postgres: copy table " + name + ": columns and types differ")
	}
	return &copyTable{name: name, cols: cols, types: types,
		sql: "COPY " + pgx.Identifier{name}.Sanitize() + " (" + quoteCols(cols) + ") FROM STDIN BINARY"}
}

func quoteCols(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// copyHeader is the binary COPY header: the signature, no flags, no
// header extension.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// copyChunk is the size of the pieces a copyBuf's rows are kept in: rows
// are appended to the last piece and a new one is started when it is
// nearly full, so a run's rows are never moved to grow one buffer, and the
// pieces are reused (chunkPool).
const copyChunk = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, copyChunk); return &b }}

// copyBuf is one table's rows being encoded: the index rows of a run,
// built as they are decided (addIndex).
type copyBuf struct {
	done [][]byte // full pieces
	b    []byte   // the piece being filled
	rows int
}

func (c *copyBuf) row(fields int) {
	switch {
	case c.b == nil:
		c.b = (*chunkPool.Get().(*[]byte))[:0]
		if c.rows == 0 && len(c.done) == 0 {
			c.b = append(c.b, copyHeader...)
		}
	case cap(c.b)-len(c.b) < 512:
		c.done = append(c.done, c.b)
		c.b = (*chunkPool.Get().(*[]byte))[:0]
	}
	c.b = binary.BigEndian.AppendUint16(c.b, uint16(fields))
	c.rows++
}

func (c *copyBuf) int4(v int32) { c.b = appendInt4(c.b, v) }

func (c *copyBuf) int8(v int64) { c.b = appendInt8(c.b, v) }

func (c *copyBuf) float8(v float64) { c.b = appendFloat8(c.b, v) }

func (c *copyBuf) text(v string) { c.b = appendText(c.b, v) }

func (c *copyBuf) null() { c.b = appendNull(c.b) }

func appendInt4(b []byte, v int32) []byte {
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

func appendInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendFloat8(b []byte, v float64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

func appendText(b []byte, v string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendNull(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, math.MaxUint32) // -1
}

// appendRow appends one row of values of t's column types: int32
// (integer), int64 (bigint), string (text), []byte (bytea; nil is NULL),
// bool, float64 (double precision), or nil (NULL).
func appendRow(b []byte, t *copyTable, vals []any) ([]byte, error) {
	if len(vals) != len(t.types) {
		return b, fmt.Errorf("copy %s: %d values, want %d", t.name, len(vals), len(t.types))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for i, v := range vals {
		ok := true
		switch x := v.(type) {
		case nil:
			b = appendNull(b)
		case int32:
			ok = t.types[i] == colInt4
			b = appendInt4(b, x)
		case int64:
			ok = t.types[i] == colInt8
			b = appendInt8(b, x)
		case string:
			ok = t.types[i] == colText
			b = appendText(b, x)
		case []byte:
			ok = t.types[i] == colBytea
			if x == nil {
				b = appendNull(b)
			} else {
				b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
				b = append(b, x...)
			}
		case bool:
			ok = t.types[i] == colBool
			b = binary.BigEndian.AppendUint32(b, 1)
			if x {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case float64:
			ok = t.types[i] == colFloat8
			b = appendFloat8(b, x)
		default:
			ok = false
		}
		if !ok {
			return b, fmt.Errorf("copy %s: column %s: a %T", t.name, t.cols[i], v)
		}
	}
	return b, nil
}

// trailer is the binary COPY trailer (a field count of -1).
var trailer = []byte{0xff, 0xff}

// send copies the buffer's rows into t on a's transaction, and empties the
// buffer (its pieces back to chunkPool).
func (c *copyBuf) send(a *applier, t *copyTable) error {
	if c.rows == 0 {
		return nil
	}
	want := c.rows
	pieces := append(c.done, c.b)
	readers := make([]io.Reader, 0, len(pieces)+1)
	for _, p := range pieces {
		readers = append(readers, bytes.NewReader(p))
	}
	readers = append(readers, bytes.NewReader(trailer))
	tag, err := a.tx.Conn().PgConn().CopyFrom(a.ctx, io.MultiReader(readers...), t.sql)
	for _, p := range pieces {
		if cap(p) == copyChunk {
			p = p[:0]
			chunkPool.Put(&p)
		}
	}
	*c = copyBuf{}
	if err != nil {
		return fmt.Errorf("copy %s: %w", t.name, err)
	}
	if n := tag.RowsAffected(); n != int64(want) {
		return fmt.Errorf("copy %s: %d rows, want %d", t.name, n, want)
	}
	return nil
}

// rowsReader streams rows of t as binary COPY, encoding them a piece at a
// time as the connection reads them (the rows that carry bodies: the
// encoded copy of a run's bodies is never whole in memory).
type rowsReader struct {
	t    *copyTable
	rows [][]any
	next int
	buf  []byte
	off  int
	end  bool // the trailer was encoded
}

func (r *rowsReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if r.end {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		if r.next == 0 {
			r.buf = append(r.buf, copyHeader...)
		}
		for r.next < len(r.rows) && len(r.buf) < copyChunk/2 {
			var err error
			if r.buf, err = appendRow(r.buf, r.t, r.rows[r.next]); err != nil {
				return 0, err
			}
			r.next++
		}
		if r.next == len(r.rows) {
			r.buf, r.end = append(r.buf, trailer...), true
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// The tables the set-based writer copies into, with their columns' types
// (migrations 0001, 0015, 0016, 0017).
var (
	copySources = newCopyTable("source_records",
		[]string{"srid", "kind", "clinic_id", "hash", "body", "resources", "updated"},
		[]colType{colInt8, colText, colText, colText, colBytea, colText, colInt8})
	copyResources = newCopyTable("resources",
		[]string{"rid", "type", "id", "version", "last_updated", "deleted", "patient", "hash", "src"},
		[]colType{colInt8, colText, colText, colInt8, colInt8, colBool, colText, colBytea, colInt8})
	copyHistory = newCopyTable("history",
		[]string{"rid", "version", "last_updated", "deleted", "patient", "body"},
		[]colType{colInt8, colInt8, colInt8, colBool, colText, colBytea})
)
