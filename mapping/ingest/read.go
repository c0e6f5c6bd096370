package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// Limits bound one batch as it is read (docs/design/security.md IN-3). Zero
// means no limit.
type Limits struct {
	// MaxBytes bounds the whole batch (the request body or the file).
	MaxBytes int64
	// MaxRecordBytes bounds one record; a longer record is rejected on its
	// own (the others of the batch still land) and never held in memory
	// beyond this many bytes.
	MaxRecordBytes int
	// MaxRecords bounds the records of one batch.
	MaxRecords int
}

// Default limits (docs/clinic-records.md, Limits).
const (
	DefaultMaxBytes       = 64 << 20
	DefaultMaxRecordBytes = 4 << 20
	DefaultMaxRecords     = 50_000
)

// DefaultLimits are the limits of the ingest API unless configured.
var DefaultLimits = Limits{MaxBytes: DefaultMaxBytes, MaxRecordBytes: DefaultMaxRecordBytes, MaxRecords: DefaultMaxRecords}

// Batch is a batch of records as read, before anything is decoded: the one
// shape both doors (the ingest API and the import command) hand to
// IngestBatch, so both keep the same record-level rules.
type Batch struct {
	// Records are the records' raw JSON in batch order; nil for a record
	// refused while reading (see Refused).
	Records []json.RawMessage
	// Lines are, for NDJSON, the 1-based line of each record; nil for a
	// JSON array.
	Lines []int
	// Refused holds the errors of the records refused while reading (too
	// large), by index.
	Refused map[int][]clinic.FieldError
	// Stored, when set, is called by IngestBatch after each store write
	// with the results of the records it committed (created, updated,
	// unchanged, or rejected by the store), from the goroutine that writes,
	// never concurrently: what it is told has landed.
	Stored func([]Result)
}

// Len is the number of records of the batch.
func (b *Batch) Len() int { return len(b.Records) }

// BatchOf wraps raw records as a batch.
func BatchOf(raw []json.RawMessage) *Batch { return &Batch{Records: raw} }

// LimitError is a batch that breaks a limit as a whole (too many bytes or
// records): nothing of it is ingested. Path names where the limit was
// crossed: the record ("[50000]") or the line ("line 50001").
type LimitError struct {
	Path, Msg string
}

func (e *LimitError) Error() string { return e.Path + ": " + e.Msg }

// SyntaxError is a batch whose framing is broken (a JSON array that is not
// an array): nothing of it is ingested. It gives positions, never content.
type SyntaxError struct {
	Msg string
}

func (e *SyntaxError) Error() string { return e.Msg }

// recordTooLarge is the error of a record over Limits.MaxRecordBytes.
func recordTooLarge(limit int) []clinic.FieldError {
	return []clinic.FieldError{{Path: "", Message: "the record is larger than the limit of " + strconv.Itoa(limit) + " bytes"}}
}

// ReadNDJSON reads newline-delimited JSON, one record per line; lines of
// only white space are skipped. The rule is per line: a line that is not a
// valid record is rejected on its own with its line number (by
// IngestBatch, or here when it is over the record limit) and the other
// lines still land. Only the limits on the whole batch refuse it all
// (*LimitError); a read failure is returned as it is.
func ReadNDJSON(r io.Reader, lim Limits) (*Batch, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	b := &Batch{Lines: []int{}}
	var total int64
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		// over: the line is past the record limit and no longer kept;
		// blank: nothing but white space seen on it so far (a blank line
		// is no record, however long).
		over, blank := false, true
		var err error
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			total += int64(len(frag))
			if blank && len(bytes.TrimSpace(frag)) > 0 {
				blank = false
			}
			if lim.MaxBytes > 0 && total > lim.MaxBytes {
				return nil, &LimitError{Path: "line " + strconv.Itoa(n), Msg: tooManyBytes(lim.MaxBytes)}
			}
			if !over {
				if lim.MaxRecordBytes > 0 && len(line)+len(bytes.TrimRight(frag, "\r\n")) > lim.MaxRecordBytes {
					over, line = true, line[:0]
				} else {
					line = append(line, frag...)
				}
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if t := bytes.TrimSpace(line); (over && !blank) || len(t) > 0 {
			if lim.MaxRecords > 0 && len(b.Records) >= lim.MaxRecords {
				return nil, &LimitError{Path: "line " + strconv.Itoa(n), Msg: tooManyRecords(lim.MaxRecords)}
			}
			if over {
				b.refuse(len(b.Records), recordTooLarge(lim.MaxRecordBytes))
				b.Records = append(b.Records, nil)
			} else {
				b.Records = append(b.Records, json.RawMessage(bytes.Clone(t)))
			}
			b.Lines = append(b.Lines, n)
		}
		if err != nil { // io.EOF
			return b, nil
		}
	}
}

func (b *Batch) refuse(i int, errs []clinic.FieldError) {
	if b.Refused == nil {
		b.Refused = map[int][]clinic.FieldError{}
	}
	b.Refused[i] = errs
}

func tooManyBytes(n int64) string {
	return "the batch is larger than the limit of " + strconv.FormatInt(n, 10) + " bytes"
}

func tooManyRecords(n int) string {
	return "the batch holds more than the limit of " + strconv.Itoa(n) + " records"
}

// ReadJSONArray reads a JSON array of records, element by element, without
// holding more than one record (up to Limits.MaxRecordBytes) beyond the
// records kept. The array's framing must be sound ('[' records separated by
// ',' then ']', nothing after), else *SyntaxError; each element is judged
// on its own like an NDJSON line: malformed JSON or a record over the
// record limit is rejected while the others land.
func ReadJSONArray(r io.Reader, lim Limits) (*Batch, error) {
	s := &elemScanner{br: bufio.NewReaderSize(r, 64<<10), lim: lim, line: 1}
	b := &Batch{}
	c, err := s.nonSpace()
	if err != nil {
		return nil, s.eof(err)
	}
	if c != '[' {
		return nil, s.syntax("the body must be a JSON array of records")
	}
	c, err = s.nonSpace()
	if err != nil {
		return nil, s.eof(err)
	}
	if c == ']' {
		return b, s.end()
	}
	s.unread()
	for i := 0; ; i++ {
		if lim.MaxRecords > 0 && i >= lim.MaxRecords {
			return nil, &LimitError{Path: "[" + strconv.Itoa(i) + "]", Msg: tooManyRecords(lim.MaxRecords)}
		}
		raw, over, err := s.element(i)
		if err != nil {
			return nil, err
		}
		switch {
		case over:
			b.refuse(i, recordTooLarge(lim.MaxRecordBytes))
			b.Records = append(b.Records, nil)
		case len(bytes.TrimSpace(raw)) == 0:
			// Nothing but characters JSON does not count as white space
			// (a form feed): no record, and refused as such.
			b.refuse(i, []clinic.FieldError{{Path: "", Message: "the array element is empty"}})
			b.Records = append(b.Records, nil)
		default:
			b.Records = append(b.Records, raw)
		}
		c, err := s.nonSpace()
		if err != nil {
			return nil, s.eof(err)
		}
		switch c {
		case ',':
		case ']':
			return b, s.end()
		default:
			return nil, s.syntax("expected ',' or ']' after a record")
		}
	}
}

// ReadRecord reads a body of one record (a JSON object): its raw bytes, or
// a *LimitError when it is over the record limit (the rest is not read).
func ReadRecord(r io.Reader, lim Limits) (json.RawMessage, error) {
	max := int64(lim.MaxRecordBytes)
	if lim.MaxBytes > 0 && (max <= 0 || lim.MaxBytes < max) {
		max = lim.MaxBytes
	}
	if max <= 0 {
		return io.ReadAll(r)
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(bytes.TrimSpace(data))) > max {
		return nil, &LimitError{Path: "", Msg: "the record is larger than the limit of " + strconv.FormatInt(max, 10) + " bytes"}
	}
	return bytes.TrimSpace(data), nil
}

// elemScanner splits a JSON array into its elements: it tracks only strings
// and nesting, leaving the syntax of an element to clinic.Decode.
type elemScanner struct {
	br        *bufio.Reader
	lim       Limits
	total     int64
	line, col int
	prevCol   int
	lastNewl  bool
	buf       []byte
}

func (s *elemScanner) read() (byte, error) {
	c, err := s.br.ReadByte()
	if err != nil {
		return 0, err
	}
	s.total++
	if s.lim.MaxBytes > 0 && s.total > s.lim.MaxBytes {
		return 0, &LimitError{Path: "", Msg: tooManyBytes(s.lim.MaxBytes)}
	}
	s.prevCol, s.lastNewl = s.col, c == '\n'
	if c == '\n' {
		s.line, s.col = s.line+1, 0
	} else {
		s.col++
	}
	return c, nil
}

func (s *elemScanner) unread() {
	_ = s.br.UnreadByte()
	s.total--
	if s.lastNewl {
		s.line--
	}
	s.col = s.prevCol
}

func (s *elemScanner) nonSpace() (byte, error) {
	for {
		c, err := s.read()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (s *elemScanner) syntax(msg string) error {
	return &SyntaxError{Msg: fmt.Sprintf("invalid JSON at line %d, column %d (byte offset %d): %s", s.line, max(s.col, 1), max(s.total-1, 0), msg)}
}

// eof turns a read error into the batch's error: the end of the body inside
// the array is a syntax error, a limit or transport failure stays as it is.
func (s *elemScanner) eof(err error) error {
	if errors.Is(err, io.EOF) {
		return &SyntaxError{Msg: "invalid JSON: the body ends early"}
	}
	return err
}

// end checks that nothing but white space follows the array.
func (s *elemScanner) end() error {
	if _, err := s.nonSpace(); err == nil {
		return s.syntax("data after the array")
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// element reads one element: its bytes (nil when over the record limit,
// over true) up to, not including, the ',' or ']' that ends it.
func (s *elemScanner) element(i int) (raw json.RawMessage, over bool, err error) {
	s.buf = s.buf[:0]
	depth, inStr, esc, started := 0, false, false, false
	for {
		c, err := s.read()
		if err != nil {
			return nil, false, s.eof(err)
		}
		if !inStr && depth == 0 && (c == ',' || c == ']') {
			if !started {
				return nil, false, s.syntax("expected a record")
			}
			s.unread()
			return bytes.Clone(bytes.TrimSpace(s.buf)), over, nil
		}
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth < 0 {
				return nil, false, s.syntax("unbalanced '" + string(c) + "' in record [" + strconv.Itoa(i) + "]")
			}
			if depth == 0 { // the record's object (or array) is closed
				if s.buf = append(s.buf, c); over || (s.lim.MaxRecordBytes > 0 && len(s.buf) > s.lim.MaxRecordBytes) {
					return nil, true, nil
				}
				return bytes.Clone(s.buf), false, nil
			}
		}
		if !started && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue
		}
		started = true
		if !over {
			s.buf = append(s.buf, c)
			if s.lim.MaxRecordBytes > 0 && len(s.buf) > s.lim.MaxRecordBytes {
				over, s.buf = true, s.buf[:0]
			}
		}
		if inStr && !esc {
			// Inside a string: take the plain run that follows in bulk
			// (strings are most of a record's bytes).
			if err := s.plainRun(&over); err != nil {
				return nil, false, err
			}
		}
	}
}

// plainRun consumes, inside a string, the buffered bytes up to the next
// quote, backslash or line feed, appending them to the record unless it is
// over the limit.
func (s *elemScanner) plainRun(over *bool) error {
	buf, _ := s.br.Peek(s.br.Buffered())
	n := bytes.IndexAny(buf, "\"\\\n")
	if n < 0 {
		n = len(buf)
	}
	if n == 0 {
		return nil
	}
	s.total += int64(n)
	if s.lim.MaxBytes > 0 && s.total > s.lim.MaxBytes {
		return &LimitError{Path: "", Msg: tooManyBytes(s.lim.MaxBytes)}
	}
	s.col += n
	s.prevCol, s.lastNewl = s.col-1, false
	if !*over {
		s.buf = append(s.buf, buf[:n]...)
		if s.lim.MaxRecordBytes > 0 && len(s.buf) > s.lim.MaxRecordBytes {
			*over, s.buf = true, s.buf[:0]
		}
	}
	_, err := s.br.Discard(n)
	return err
}
