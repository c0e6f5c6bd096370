package sqlcore

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
)

// termString renders resolved terms as "patients|types|clause params" for
// comparison; "*" is no patient check.
func termString(ts []Term) []string {
	var out []string
	for _, t := range ts {
		p := "*"
		if t.Patients != nil {
			p = strings.Join(t.Patients, ",")
		}
		var cls []string
		for _, c := range t.Clauses {
			s := c.Param
			if c.Not {
				s += ":not"
			}
			cls = append(cls, fmt.Sprintf("%s=%v", s, c.Key))
		}
		out = append(out, p+"|"+strings.Join(t.Types, ",")+"|"+strings.Join(cls, ","))
	}
	return out
}

func TestResolveAccess(t *testing.T) {
	known := func(name string) (any, bool, error) {
		switch name {
		case "category", "patient", "_security":
			return name, true, nil
		}
		return nil, false, nil
	}
	pat := func(ids ...string) store.Clause {
		c := store.Clause{Param: "patient", Kind: store.KindReference}
		for _, id := range ids {
			c.Values = append(c.Values, store.Value{Str: "Patient/" + id})
		}
		return c
	}
	survey := store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "survey", AnySystem: true}}}
	notR := store.Clause{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "R", AnySystem: true}}}
	unknown := store.Clause{Param: "nothing", Kind: store.KindToken, Values: []store.Value{{Code: "x", AnySystem: true}}}
	notUnknown := store.Clause{Param: "nothing", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "x", AnySystem: true}}}
	terms := func(ts ...store.AccessTerm) *store.Access { return &store.Access{Terms: ts} }
	for _, tc := range []struct {
		name         string
		q            store.Query
		none         bool
		terms        []string
		patients     []string
		compartments []string
	}{
		{name: "no access", q: store.Query{Patients: []string{"p1"}}, patients: []string{"p1"}, compartments: []string{"p1"}},
		{name: "no terms: nothing", q: store.Query{Access: terms()}, none: true},
		{
			name:  "terms keep their patients and clauses; the union bounds the compartments",
			q:     store.Query{Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}, Clauses: []store.Clause{survey}}, store.AccessTerm{Patients: []string{"p2", "p3"}, Clauses: []store.Clause{notR}})},
			terms: []string{"p1,p2||category=category", "p2,p3||_security:not=_security"}, patients: []string{"p1", "p2", "p3"}, compartments: []string{"p1", "p2", "p3"},
		},
		{
			name:  "a term open to every compartment: no bound",
			q:     store.Query{Access: terms(store.AccessTerm{Patients: []string{"p1"}}, store.AccessTerm{Clauses: []store.Clause{survey}})},
			terms: []string{"p1||", "*||category=category"},
		},
		{
			name: "a term without conditions lifts the restriction",
			q:    store.Query{Access: terms(store.AccessTerm{Patients: []string{"p1"}, Clauses: []store.Clause{survey}}, store.AccessTerm{})},
		},
		{
			name: "a term whose only clause matches everything lifts it",
			q:    store.Query{Access: terms(store.AccessTerm{Clauses: []store.Clause{notUnknown}})},
		},
		{
			name:  "a term of other types is dropped",
			q:     store.Query{Type: "Observation", Access: terms(store.AccessTerm{Types: []string{"Condition"}}, store.AccessTerm{Types: []string{"Observation", "Condition"}, Patients: []string{"p1"}})},
			terms: []string{"p1||"}, patients: []string{"p1"}, compartments: []string{"p1"},
		},
		{
			name: "only terms of other types: nothing",
			q:    store.Query{Type: "Observation", Access: terms(store.AccessTerm{Types: []string{"Condition"}})},
			none: true,
		},
		{
			name:  "a term that cannot match is dropped",
			q:     store.Query{Access: terms(store.AccessTerm{Patients: []string{"p1"}, Clauses: []store.Clause{unknown}}, store.AccessTerm{Patients: []string{"p2"}})},
			terms: []string{"p2||"}, patients: []string{"p2"}, compartments: []string{"p2"},
		},
		{
			name: "no term can match: nothing",
			q:    store.Query{Access: terms(store.AccessTerm{Patients: []string{"p1"}, Clauses: []store.Clause{unknown}})},
			none: true,
		},
		{
			name:  "searched patients narrowed by the terms",
			q:     store.Query{Clauses: []store.Clause{pat("p1", "p2", "p9")}, Access: terms(store.AccessTerm{Patients: []string{"p2", "p1", "p3"}, Clauses: []store.Clause{survey}})},
			terms: []string{"p1,p2||category=category"}, compartments: []string{"p1", "p2"},
		},
		{
			name: "a searched patient in no term: nothing",
			q:    store.Query{Clauses: []store.Clause{pat("p9")}, Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}})},
			none: true,
		},
		{
			name:  "a searched patient narrows the terms to itself, checked by the search",
			q:     store.Query{Clauses: []store.Clause{pat("p2")}, Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}, Clauses: []store.Clause{survey}}, store.AccessTerm{Patients: []string{"p3"}})},
			terms: []string{"*||category=category"}, patients: nil, compartments: []string{"p2"},
		},
		{
			name:     "a searched patient in a term without clauses: no restriction left",
			q:        store.Query{Clauses: []store.Clause{pat("p2")}, Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}}, store.AccessTerm{Patients: []string{"p2"}, Clauses: []store.Clause{survey}})},
			patients: nil, compartments: []string{"p2"},
		},
		{
			name:  "two searched patients in different terms",
			q:     store.Query{Clauses: []store.Clause{pat("p1", "p3")}, Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}, Clauses: []store.Clause{survey}}, store.AccessTerm{Patients: []string{"p3"}})},
			terms: []string{"p1||category=category", "p3||"}, patients: nil, compartments: []string{"p1", "p3"},
		},
		{
			name:  "the compartments restriction narrows the terms",
			q:     store.Query{Patients: []string{"p2", "p3"}, Access: terms(store.AccessTerm{Patients: []string{"p1", "p2"}})},
			terms: []string{"p2||"}, patients: []string{"p2"}, compartments: []string{"p2"},
		},
		{
			name: "a compartments restriction and a searched patient that exclude each other: nothing",
			q:    store.Query{Clauses: []store.Clause{pat("p1")}, Patients: []string{"p2"}},
			none: true,
		},
		{
			name:     "a compartments restriction and a searched patient: their intersection",
			q:        store.Query{Clauses: []store.Clause{pat("p1", "p2")}, Patients: []string{"p2", "p3"}},
			patients: []string{"p2", "p3"}, compartments: []string{"p2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			if q.Type == "" {
				q.Type = "Observation"
			}
			res, none, err := Resolve(&q, known)
			if err != nil {
				t.Fatal(err)
			}
			if none != tc.none {
				t.Fatalf("none = %v, want %v", none, tc.none)
			}
			if none {
				return
			}
			if got := termString(res.Access); !reflect.DeepEqual(got, tc.terms) {
				t.Errorf("terms = %q, want %q", got, tc.terms)
			}
			if !reflect.DeepEqual(res.Patients, tc.patients) {
				t.Errorf("Patients = %v, want %v", res.Patients, tc.patients)
			}
			if !reflect.DeepEqual(res.Compartments, tc.compartments) {
				t.Errorf("Compartments = %v, want %v", res.Compartments, tc.compartments)
			}
		})
	}
	t.Run("a bad clause in a term is an error", func(t *testing.T) {
		q := store.Query{Type: "Observation", Access: terms(store.AccessTerm{Clauses: []store.Clause{{Param: "category", Kind: store.KindToken}}})}
		if _, _, err := Resolve(&q, known); err == nil {
			t.Error("no error")
		}
	})
}

func TestResolveEverything(t *testing.T) {
	// Observation has category; Condition has neither category nor
	// _security rows.
	key := func(typ string) ParamKey {
		return func(name string) (any, bool, error) {
			if typ == "Observation" && (name == "category" || name == "_security") {
				return typ + "." + name, true, nil
			}
			return nil, false, nil
		}
	}
	survey := store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "survey", AnySystem: true}}}
	notR := store.Clause{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "R", AnySystem: true}}}
	terms := func(ts ...store.AccessTerm) *store.Access { return &store.Access{Terms: ts} }
	for _, tc := range []struct {
		name   string
		q      store.EverythingQuery
		none   bool
		terms  []string
		hasErr bool
	}{
		{name: "no access", q: store.EverythingQuery{}},
		{name: "no terms: nothing", q: store.EverythingQuery{Access: terms()}, none: true},
		{name: "a term of another patient: nothing", q: store.EverythingQuery{Access: terms(store.AccessTerm{Patients: []string{"p2"}, Types: []string{"Patient"}})}, none: true},
		{name: "a term of every type: no restriction", q: store.EverythingQuery{Access: terms(store.AccessTerm{Patients: []string{"p2"}}, store.AccessTerm{Patients: []string{"p1", "p2"}})}},
		{
			name:  "types without clauses merge, sorted; clauses resolve per type",
			q:     store.EverythingQuery{Access: terms(store.AccessTerm{Patients: []string{"p1"}, Types: []string{"Patient", "Condition"}}, store.AccessTerm{Types: []string{"Observation", "Condition"}, Clauses: []store.Clause{survey, notR}})},
			terms: []string{"*|Condition,Patient|", "*|Observation|category=Observation.category,_security:not=Observation._security"},
		},
		{
			name:  "a :not of a parameter the type lacks matches every resource of it",
			q:     store.EverythingQuery{Access: terms(store.AccessTerm{Types: []string{"Condition"}, Clauses: []store.Clause{notR}})},
			terms: []string{"*|Condition|"},
		},
		{
			name: "a clause of a parameter the type lacks matches none of it",
			q:    store.EverythingQuery{Access: terms(store.AccessTerm{Types: []string{"Condition"}, Clauses: []store.Clause{survey}})},
			none: true,
		},
		{
			name:  "_type narrows the terms",
			q:     store.EverythingQuery{Types: []string{"Observation"}, Access: terms(store.AccessTerm{Types: []string{"Patient", "Observation"}})},
			terms: []string{"*|Observation|"},
		},
		{name: "clauses without types are an error", q: store.EverythingQuery{Access: terms(store.AccessTerm{Clauses: []store.Clause{survey}})}, hasErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Patient = "p1"
			got, none, err := ResolveEverything(&q, key)
			if (err != nil) != tc.hasErr {
				t.Fatalf("err = %v, want error %v", err, tc.hasErr)
			}
			if none != tc.none {
				t.Fatalf("none = %v, want %v", none, tc.none)
			}
			if s := termString(got); !reflect.DeepEqual(s, tc.terms) {
				t.Errorf("terms = %q, want %q", s, tc.terms)
			}
		})
	}
}

// TestAccessSQL checks the OR of the terms as each dialect writes it, with
// the arguments in placeholder order.
func TestAccessSQL(t *testing.T) {
	survey := &store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "survey", AnySystem: true}}}
	notR := &store.Clause{Param: "_security", Kind: store.KindToken, Not: true, Values: []store.Value{{Code: "R", AnySystem: true}}}
	for _, tc := range []struct {
		name             string
		terms            []Term
		sqlite, postgres string
		args             []any // SQLite's
	}{
		{
			name:     "one term",
			terms:    []Term{{Patients: []string{"p1", "p2"}, Clauses: []Clause{{Clause: survey, Key: "category"}}}},
			sqlite:   "+r.patient IN (?, ?) AND EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.code = ?))",
			postgres: "r.patient = ANY($1::text[]) AND EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $2 AND (x.code = $3) OFFSET 0)",
			args:     []any{"p1", "p2", "category", "survey"},
		},
		{
			name: "terms OR",
			terms: []Term{
				{Patients: []string{"p1"}, Clauses: []Clause{{Clause: survey, Key: "category"}, {Clause: notR, Key: "_security"}}},
				{Types: []string{"Condition", "Patient"}},
			},
			sqlite: "((+r.patient IN (?) AND EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.code = ?)) AND " +
				"NOT EXISTS (SELECT 1 FROM idx_token x INDEXED BY idx_token_rid WHERE x.rid = r.rid AND x.pid = ? AND (x.code = ?))) OR (r.type IN (?, ?)))",
			postgres: "((r.patient = ANY($1::text[]) AND EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $2 AND (x.code = $3) OFFSET 0) AND " +
				"NOT EXISTS (SELECT 1 FROM idx_token x WHERE x.rid = r.rid AND x.pid = $4 AND (x.code = $5) OFFSET 0)) OR (r.type = ANY($6::text[])))",
			args: []any{"p1", "category", "survey", "_security", "R", "Condition", "Patient"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []struct {
				d    *Dialect
				want string
			}{{SQLite, tc.sqlite}, {Postgres, tc.postgres}} {
				b := NewBuilder(d.d)
				got, err := b.Access(tc.terms)
				if err != nil {
					t.Fatal(err)
				}
				if got != d.want {
					t.Errorf("%s:\n got %s\nwant %s", d.d.Name, got, d.want)
				}
				if d.d == SQLite && !reflect.DeepEqual(b.Args(), tc.args) {
					t.Errorf("args = %#v, want %#v", b.Args(), tc.args)
				}
			}
		})
	}
	if _, err := NewBuilder(SQLite).Access([]Term{{}}); err == nil {
		t.Error("a term without conditions: no error")
	}
}

// TestInLongList: a long list is one parameter on both dialects.
func TestInLongList(t *testing.T) {
	var ids []string
	for i := range MaxInList + 1 {
		ids = append(ids, fmt.Sprintf("p%d", i))
	}
	b := NewBuilder(SQLite)
	if got, want := b.In("+r.patient", ids), "+r.patient IN (SELECT value FROM json_each(?))"; got != want {
		t.Errorf("SQLite: %s, want %s", got, want)
	}
	if args := b.Args(); len(args) != 1 || !strings.HasPrefix(args[0].(string), `["p0","p1",`) {
		t.Errorf("SQLite args = %v", args)
	}
	b = NewBuilder(SQLite)
	if got := b.In("r.patient", ids[:MaxInList]); strings.Count(got, "?") != MaxInList || len(b.Args()) != MaxInList {
		t.Errorf("SQLite, %d values: %s", MaxInList, got)
	}
	b = NewBuilder(Postgres)
	if got, want := b.In("r.patient", ids), "r.patient = ANY($1::text[])"; got != want || len(b.Args()) != 1 {
		t.Errorf("Postgres: %s, want %s", got, want)
	}
	// Checked only: a hashed subplan on PostgreSQL, whose values the
	// planner does not estimate one by one.
	for _, tc := range []struct {
		d          *Dialect
		vals       []string
		want       string
		wantParams int
	}{
		{SQLite, ids, "+r.patient IN (SELECT value FROM json_each(?))", 1},
		{SQLite, ids[:2], "+r.patient IN (?, ?)", 2},
		{Postgres, ids, "r.patient IN (SELECT unnest($1::text[]))", 1},
		{Postgres, ids[:2], "r.patient = ANY($1::text[])", 1},
	} {
		b := NewBuilder(tc.d)
		if got := b.InCheck("r.patient", tc.vals); got != tc.want || len(b.Args()) != tc.wantParams {
			t.Errorf("%s InCheck of %d: %s (%d parameters), want %s", tc.d.Name, len(tc.vals), got, len(b.Args()), tc.want)
		}
	}
}
