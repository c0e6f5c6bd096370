package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/ketabridge/ketabridge/store"
)

// A version row is what reads of one resource's versions select, in this
// order: version, last_updated, deleted, coalesce(patient, ''), body. Both
// backends keep every version in history; they join it to resources
// differently (SQLite by the current version's hid).

// ReadVersion reads the version of typ/id that row holds (a version row), for
// the read or vread op: store.ErrNotFound when there is none, the deletion
// version with store.ErrGone when it is one.
func (d *Dialect) ReadVersion(row Row, op, typ, id string) (store.Resource, error) {
	r := store.Resource{Type: typ, ID: id}
	var ms int64
	err := row.Scan(&r.Version, &ms, &r.Deleted, &r.Patient, &r.Body)
	if noRows(err) {
		return store.Resource{}, store.ErrNotFound
	}
	if err != nil {
		return store.Resource{}, d.wrap(op, err)
	}
	r.LastUpdated = MSTime(ms)
	if r.Deleted {
		return r, store.ErrGone
	}
	return r, nil
}

// History reads a page of typ/id's versions, newest first, and the number
// of all versions, on q (one read snapshot). count <= 0 means no limit. An
// unknown resource is store.ErrNotFound. Other errors are q's, unwrapped.
func (d *Dialect) History(ctx context.Context, q Querier, typ, id string, count, offset int) ([]store.Resource, int, error) {
	var rid int64
	var total int
	err := q.QueryRow(ctx, d.historyHead, typ, id).Scan(&rid, &total)
	if noRows(err) {
		return nil, 0, store.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	// Versions are 1..current without gaps, so the current version is the count.
	rows, err := q.Query(ctx, d.history, rid, d.Limit(count), max(offset, 0))
	out, err := collect(rows, err, func(row Row) (store.Resource, error) {
		r := store.Resource{Type: typ, ID: id}
		var ms int64
		err := row.Scan(&r.Version, &ms, &r.Deleted, &r.Patient, &r.Body)
		r.LastUpdated = MSTime(ms)
		return r, err
	})
	return out, total, err
}

// WrapRead prefixes the error of the read operation op with the backend and
// op, except store.ErrNotFound, store.ErrGone and closed (the backend's
// error for a closed store), which are returned as they are.
func (d *Dialect) WrapRead(op string, err, closed error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) || errors.Is(err, closed) {
		return err
	}
	return d.wrap(op, err)
}

// Migration is one embedded schema migration, a file named
// NNNN_description.sql.
type Migration struct {
	Version int
	Name    string // the file's base name
	SQL     string
}

// Migrations reads the migrations/*.sql files of fsys, in version order.
// Versions must be 1, 2, 3, ... without a gap or a repeat: two files of one
// number (two branches each adding "the next" migration) would leave one
// of them never applied on a database already at that version.
func Migrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad migration name %s", base)
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions run 1, 2, 3, ... once each)", base, v, len(out)+1)
		}
		out = append(out, Migration{Version: v, Name: base, SQL: string(text)})
	}
	return out, nil
}
