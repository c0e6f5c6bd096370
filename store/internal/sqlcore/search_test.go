package sqlcore

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

func TestDialectSQL(t *testing.T) {
	q := `SELECT a FROM t WHERE b = ? AND c IN (?, ?)`
	if got := SQLite.SQL(q); got != q {
		t.Errorf("SQLite.SQL = %q, want it unchanged", got)
	}
	if got, want := Postgres.SQL(q), `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)`; got != want {
		t.Errorf("Postgres.SQL = %q, want %q", got, want)
	}
}

// TestFilter checks the per-candidate condition of each kind of clause, as
// each dialect writes it, and that arguments follow placeholder order.
func TestFilter(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name     string
		cl       Clause
		sqlite   string
		postgres string
		args     []any
		// sqliteArgs, when set, are SQLite's arguments (else args).
		sqliteArgs []any
	}{
		{
			name:     "token code and system, or any system",
			cl:       Clause{Clause: &store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "s", Code: "c"}, {Code: "d", AnySystem: true}}}, Key: "code"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND ((x.code = ? AND x.sid = (SELECT sid FROM token_systems WHERE system = ?)) OR x.code = ?))",
			postgres: "EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.code = $2 AND x.sid = (SELECT sid FROM token_systems WHERE system = $3)) OR x.code = $4) OFFSET 0)",
			args:     []any{"code", "c", "s", "d"},
		},
		{
			name:     "token system only, any code",
			cl:       Clause{Clause: &store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{System: "s"}, {AnySystem: true}}}, Key: "category"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.sid = (SELECT sid FROM token_systems WHERE system = ?) OR true))",
			postgres: "EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $1 AND (x.sid = (SELECT sid FROM token_systems WHERE system = $2) OR true) OFFSET 0)",
			args:     []any{"category", "s"},
		},
		{
			name:     "string prefix and exact, normalized",
			cl:       Clause{Clause: &store.Clause{Param: "name", Kind: store.KindString, Values: []store.Value{{Str: "Émile"}, {Str: "Bo", Exact: true}}}, Key: "name"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_string x INDEXED BY idx_string_rid WHERE x.rid = r.rid AND x.pid = ? AND ((x.value >= ? AND x.value < ?) OR x.value = ?))",
			postgres: "EXISTS (SELECT 1 FROM idx_string x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.value >= $2 AND x.value < $3) OR x.value = $4) OFFSET 0)",
			args:     []any{"name", "emile", "emile" + maxString, "bo"},
		},
		{
			name: "reference",
			cl:   Clause{Clause: &store.Clause{Param: "subject", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}, Key: "subject"},
			// SQLite: the target's rid, or the text (PERF-SQLB-4).
			sqlite: "EXISTS (SELECT 1 FROM idx_ref x INDEXED BY idx_ref_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.target IN ((SELECT rid FROM resources WHERE type = ? AND id = ?), ?)))",
			// PostgreSQL: the rid in trid, or the text in target (PERF-PG-6).
			postgres:   "EXISTS (SELECT 1 FROM idx_ref x WHERE x.rid = r.rid AND x.pid = $1 AND (((x.trid = (SELECT rid FROM resources WHERE type = $2 AND id = $3) AND x.target = '') OR (x.trid = 0 AND x.target = $4))) OFFSET 0)",
			args:       []any{"subject", "Patient", "p1", "Patient/p1"},
			sqliteArgs: []any{"subject", "Patient", "p1", "Patient/p1"},
		},
		{
			name:     "reference not of the form Type/id",
			cl:       Clause{Clause: &store.Clause{Param: "derived-from", Kind: store.KindReference, Values: []store.Value{{Str: "https://x.example/Observation/1"}, {Str: "Observation/1/_history/2"}}}, Key: "derived-from"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_ref x INDEXED BY idx_ref_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.target = ? OR x.target = ?))",
			postgres: "EXISTS (SELECT 1 FROM idx_ref x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.trid = 0 AND x.target = $2) OR (x.trid = 0 AND x.target = $3)) OFFSET 0)",
			args:     []any{"derived-from", "https://x.example/Observation/1", "Observation/1/_history/2"},
		},
		{
			name:     "date ge and ne",
			cl:       Clause{Clause: &store.Clause{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Ge, Lo: 10, Hi: 19}, {Prefix: store.Ne, Lo: 30, Hi: 39}}}, Key: "date"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_date x INDEXED BY idx_date_rid WHERE x.rid = r.rid AND x.pid = ? AND ((x.hi > ? OR (x.lo >= ? AND x.hi <= ?)) OR NOT (x.lo >= ? AND x.hi <= ?)))",
			postgres: "EXISTS (SELECT 1 FROM idx_date x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.hi > $2 OR (x.lo >= $3 AND x.hi <= $4)) OR NOT (x.lo >= $5 AND x.hi <= $6)) OFFSET 0)",
			args:     []any{"date", int64(19), int64(10), int64(19), int64(30), int64(39)},
		},
		{
			name:     "date sa, eb, lt, le, gt, eq",
			cl:       Clause{Clause: &store.Clause{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: store.Sa, Lo: 1, Hi: 2}, {Prefix: store.Eb, Lo: 3, Hi: 4}, {Prefix: store.Lt, Lo: 5, Hi: 6}, {Prefix: store.Le, Lo: 7, Hi: 8}, {Prefix: store.Gt, Lo: 9, Hi: 10}, {Lo: 11, Hi: 12}}}, Key: "date"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_date x INDEXED BY idx_date_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.lo > ? OR x.hi < ? OR x.lo < ? OR (x.lo < ? OR (x.lo >= ? AND x.hi <= ?)) OR x.hi > ? OR (x.lo >= ? AND x.hi <= ?)))",
			postgres: "EXISTS (SELECT 1 FROM idx_date x WHERE x.rid = r.rid AND x.pid = $1 AND (x.lo > $2 OR x.hi < $3 OR x.lo < $4 OR (x.lo < $5 OR (x.lo >= $6 AND x.hi <= $7)) OR x.hi > $8 OR (x.lo >= $9 AND x.hi <= $10)) OFFSET 0)",
			args:     []any{"date", int64(2), int64(3), int64(5), int64(7), int64(7), int64(8), int64(10), int64(11), int64(12)},
		},
		{
			name:     "number",
			cl:       Clause{Clause: &store.Clause{Param: "score", Kind: store.KindNumber, Values: []store.Value{{Prefix: store.Ge, Num: 10}, {Prefix: store.Ne, Num: 3}}}, Key: "score"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_number x INDEXED BY idx_number_rid WHERE x.rid = r.rid AND x.pid = ? AND ((x.num >= ?) OR (x.num <> ?)))",
			postgres: "EXISTS (SELECT 1 FROM idx_number x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.num >= $2::double precision) OR (x.num <> $3::double precision)) OFFSET 0)",
			args:     []any{"score", 10.0, 3.0},
		},
		{
			name:     "quantity with system and code",
			cl:       Clause{Clause: &store.Clause{Param: "value-quantity", Kind: store.KindQuantity, Values: []store.Value{{Prefix: store.Lt, Num: 5.5, System: "u", Code: "mg"}}}, Key: "value-quantity"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_quantity x INDEXED BY idx_quantity_rid WHERE x.rid = r.rid AND x.pid = ? AND ((x.num < ? AND x.system = ? AND x.code = ?)))",
			postgres: "EXISTS (SELECT 1 FROM idx_quantity x WHERE x.rid = r.rid AND x.pid = $1 AND ((x.num < $2::double precision AND x.system = $3 AND x.code = $4)) OFFSET 0)",
			args:     []any{"value-quantity", 5.5, "u", "mg"},
		},
		{
			name:     "missing",
			cl:       Clause{Clause: &store.Clause{Param: "code", Kind: store.KindToken, Missing: &yes}, Key: "code"},
			sqlite:   "NOT EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ?)",
			postgres: "NOT EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $1 OFFSET 0)",
			args:     []any{"code"},
		},
		{
			name:     "not missing",
			cl:       Clause{Clause: &store.Clause{Param: "code", Kind: store.KindToken, Missing: &no}, Key: "code"},
			sqlite:   "EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ?)",
			postgres: "EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $1 OFFSET 0)",
			args:     []any{"code"},
		},
		{
			name:     "token not: no row matches, none at all included",
			cl:       Clause{Clause: &store.Clause{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "R", AnySystem: true}}}, Key: "_security"},
			sqlite:   "NOT EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.code = ?))",
			postgres: "NOT EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $1 AND (x.code = $2) OFFSET 0)",
			args:     []any{"_security", "R"},
		},
		{
			name:     "_id not",
			cl:       Clause{Clause: &store.Clause{Param: store.ParamID, Not: true, Values: []store.Value{{Str: "a"}}}},
			sqlite:   "NOT (+r.id IN (?))",
			postgres: "NOT (r.id = ANY($1::text[]))",
		},
		{
			name:     "_id",
			cl:       Clause{Clause: &store.Clause{Param: store.ParamID, Values: []store.Value{{Str: "a"}, {Str: "b"}}}},
			sqlite:   "+r.id IN (?, ?)",
			postgres: "r.id = ANY($1::text[])",
		},
		{
			name:     "_lastUpdated",
			cl:       Clause{Clause: &store.Clause{Param: store.ParamLastUpdated, Values: []store.Value{{Prefix: store.Gt, Lo: 1, Hi: 2}, {Prefix: store.Lt, Lo: 7, Hi: 8}}}},
			sqlite:   "(r.last_updated > ? OR r.last_updated < ?)",
			postgres: "(r.last_updated > $1 OR r.last_updated < $2)",
			args:     []any{int64(2), int64(7)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []struct {
				d    *Dialect
				want string
			}{{SQLite, tc.sqlite}, {Postgres, tc.postgres}} {
				b := NewBuilder(d.d)
				if err := b.Filter(tc.cl); err != nil {
					t.Fatalf("%s: %v", d.d.Name, err)
				}
				if got := b.Where(); got != d.want {
					t.Errorf("%s:\n got %s\nwant %s", d.d.Name, got, d.want)
				}
				if tc.cl.Param == store.ParamID {
					continue // the ids bind differently: one array or one per id
				}
				want := tc.args
				if d.d == SQLite && tc.sqliteArgs != nil {
					want = tc.sqliteArgs
				}
				if got := b.Args(); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: args = %#v, want %#v", d.d.Name, got, want)
				}
			}
		})
	}
}

func TestFilterBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    store.Clause
	}{
		{"date prefix", store.Clause{Param: "date", Kind: store.KindDate, Values: []store.Value{{Prefix: "ap"}}}},
		{"number prefix", store.Clause{Param: "score", Kind: store.KindNumber, Values: []store.Value{{Prefix: "ap"}}}},
		{"_lastUpdated prefix", store.Clause{Param: store.ParamLastUpdated, Values: []store.Value{{Prefix: "xx"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := NewBuilder(SQLite).Filter(Clause{Clause: &tc.c, Key: int64(1)}); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestResolve(t *testing.T) {
	yes, no := true, false
	known := func(name string) (any, bool, error) {
		switch name {
		case "code":
			return int64(7), true, nil
		case "broken":
			return nil, false, errors.New("disk")
		}
		return nil, false, nil
	}
	code := store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{Code: "c", AnySystem: true}}}
	if _, _, err := Resolve(&store.Query{Clauses: []store.Clause{code}}, known); err == nil {
		t.Error("Resolve without a type: no error")
	}
	for _, tc := range []struct {
		name     string
		clauses  []store.Clause
		wantKeys []any // the resolved clauses' keys, in order
		none     bool
		err      bool
	}{
		{"keeps order and resolves", []store.Clause{code, {Param: store.ParamID, Values: []store.Value{{Str: "a"}}}}, []any{int64(7), nil}, false, false},
		{"_id missing=true matches nothing", []store.Clause{code, {Param: store.ParamID, Missing: &yes}}, nil, true, false},
		{"_lastUpdated missing=false is dropped", []store.Clause{{Param: store.ParamLastUpdated, Missing: &no}, code}, []any{int64(7)}, false, false},
		{"unknown param matches nothing", []store.Clause{code, {Param: "other", Kind: store.KindToken, Values: []store.Value{{Code: "x"}}}}, nil, true, false},
		{"unknown param missing=true is dropped", []store.Clause{{Param: "other", Kind: store.KindToken, Missing: &yes}, code}, []any{int64(7)}, false, false},
		{"unknown param missing=false matches nothing", []store.Clause{{Param: "other", Kind: store.KindToken, Missing: &no}}, nil, true, false},
		{"no values", []store.Clause{{Param: "code", Kind: store.KindToken}}, nil, false, true},
		{"unknown kind", []store.Clause{{Param: "code", Kind: 0, Values: []store.Value{{Str: "x"}}}}, nil, false, true},
		{"lookup error", []store.Clause{{Param: "broken", Kind: store.KindToken, Values: []store.Value{{Code: "x"}}}}, nil, false, true},
		{"not on an unknown param is dropped", []store.Clause{{Param: "other", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "x"}}}, code}, []any{int64(7)}, false, false},
		{"not on a known param", []store.Clause{{Param: "code", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "x"}}}}, []any{int64(7)}, false, false},
		{"not on a reference", []store.Clause{{Param: "code", Kind: store.KindReference, Not: true, Values: []store.Value{{Str: "Patient/x"}}}}, []any{int64(7)}, false, false},
		{"not on _id", []store.Clause{{Param: store.ParamID, Not: true, Values: []store.Value{{Str: "a"}}}}, []any{nil}, false, false},
		{"not with missing", []store.Clause{{Param: "code", Kind: store.KindToken, Not: true, Missing: &yes}}, nil, false, true},
		{"not on a date", []store.Clause{{Param: "code", Kind: store.KindDate, Not: true, Values: []store.Value{{Lo: 1, Hi: 2}}}}, nil, false, true},
		{"not on _lastUpdated", []store.Clause{{Param: store.ParamLastUpdated, Not: true, Values: []store.Value{{Lo: 1, Hi: 2}}}}, nil, false, true},
		{"not without values", []store.Clause{{Param: "code", Kind: store.KindToken, Not: true}}, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, none, err := Resolve(&store.Query{Type: "Observation", Clauses: tc.clauses}, known)
			if (err != nil) != tc.err || none != tc.none {
				t.Fatalf("Resolve = none %v, err %v; want none %v, error %v", none, err, tc.none, tc.err)
			}
			var keys []any
			for _, c := range res.Clauses {
				keys = append(keys, c.Key)
			}
			if !reflect.DeepEqual(keys, tc.wantKeys) {
				t.Errorf("keys = %v, want %v", keys, tc.wantKeys)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	known := func(name string) (any, bool, error) { return name, name != "unindexed", nil }
	for _, tc := range []struct {
		name     string
		sort     []store.Sort
		sqlite   string
		postgres string
	}{
		{"none: insertion order", nil, "r.rid", "r.rid"},
		{"_id ends it", []store.Sort{{Param: store.ParamID, Desc: true}}, "r.id DESC", "r.id DESC"},
		{
			"date descending by hi, then _lastUpdated",
			[]store.Sort{{Param: "date", Kind: store.KindDate, Desc: true}, {Param: store.ParamLastUpdated}},
			"(SELECT max(x.hi) FROM idx_date x INDEXED BY idx_date_rid WHERE x.rid = r.rid AND x.pid = ?) DESC NULLS LAST, r.last_updated ASC, r.rid",
			"(SELECT max(x.hi) FROM idx_date x WHERE x.rid = r.rid AND x.pid = $1) DESC NULLS LAST, r.last_updated ASC, r.rid",
		},
		{"a key no resource has orders nothing", []store.Sort{{Param: "unindexed", Kind: store.KindToken}}, "r.rid", "r.rid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []struct {
				d    *Dialect
				want string
			}{{SQLite, tc.sqlite}, {Postgres, tc.postgres}} {
				got, err := NewBuilder(d.d).Order(&store.Query{Type: "Observation", Sort: tc.sort}, known)
				if err != nil || got != d.want {
					t.Errorf("%s: Order = %q, %v; want %q", d.d.Name, got, err, d.want)
				}
			}
		})
	}
}

func TestPaged(t *testing.T) {
	page := func(n int) []store.Resource { return make([]store.Resource, n) }
	const all = 42
	for _, tc := range []struct {
		name      string
		q         store.Query
		rows      int
		wantN     int
		wantMore  bool
		wantTotal int
		counted   bool
	}{
		{"no total asked", store.Query{Count: 10}, 11, 10, true, -1, false},
		{"last page tells the total", store.Query{Count: 10, Offset: 20, Total: true}, 4, 4, false, 24, false},
		{"first page, more: counted", store.Query{Count: 10, Total: true}, 11, 10, true, all, true},
		{"past the end: counted", store.Query{Count: 10, Offset: 50, Total: true}, 0, 0, false, all, true},
		{"no count limit", store.Query{Total: true}, 7, 7, false, 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counted := false
			res, err := Paged(&tc.q, page(tc.rows), func() (int, error) { counted = true; return all, nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Resources) != tc.wantN || res.More != tc.wantMore || res.Total != tc.wantTotal || counted != tc.counted {
				t.Errorf("got %d resources, more %v, total %d, counted %v; want %d, %v, %d, %v",
					len(res.Resources), res.More, res.Total, counted, tc.wantN, tc.wantMore, tc.wantTotal, tc.counted)
			}
		})
	}
}
