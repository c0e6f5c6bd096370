package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

const (
	loinc  = "http://loinc.org"
	snomed = "http://snomed.info/sct"
	ucum   = "http://unitsofmeasure.org"
)

// Times the fixture is written at: patients, conditions and encounters at T0,
// o1 and o2 at tObs1, o3..o5 at tObs2.
var (
	tObs1 = T0.Add(time.Minute)
	tObs2 = T0.Add(2 * time.Minute)
)

// fixture writes the data set the search, refs and everything tests share.
//
//	Patient p1 "Müller", p2 "Mueller", p3 "Smith"; Practitioner pr1 "José Núñez"
//	Condition z1 (p1), Encounter e1 (p1): type order differs from id order
//	Observation o1 p1 loinc|1234          final       2024-01-05T10:00:00Z (1 s)       score 1    5.5 mg
//	Observation o2 p1 loinc|5678          preliminary 2024-01-06 (day)                 score 2.5  7 mg
//	Observation o3 p2 snomed|1234         final       2024-01-04T12:00 .. 01-05T12:00  -          -
//	Observation o4 p3 loinc|1234 local|abc final      2024-02-01 (day)                 score 10   10 kg
//	Observation o5 -  loinc|9999          amended     -                                -          -
//	Observation o6 p1 (deleted)
func fixture(t *testing.T, s store.Store, clock *FakeClock) {
	t.Helper()
	clock.Set(T0)
	apply(t, s,
		Rec("patient", "p1", "h1", Res("Patient", "p1", "p1", "", Str("name", "Müller"), Date("birthdate", dayLo("1980-05-01"), dayHi("1980-05-01")))),
		Rec("patient", "p2", "h1", Res("Patient", "p2", "p2", "", Str("name", "Mueller"))),
		Rec("patient", "p3", "h1", Res("Patient", "p3", "p3", "", Str("name", "Smith"))),
		Rec("practitioner", "pr1", "h1", Res("Practitioner", "pr1", "", "", Str("name", "José"), Str("name", "Núñez"))),
		Rec("diagnosis", "z1", "h1", Res("Condition", "z1", "p1", "", Ref("patient", "Patient/p1"))),
		Rec("course", "e1", "h1", Res("Encounter", "e1", "p1", "", Ref("patient", "Patient/p1"))),
		Rec("session", "o6", "h1", Res("Observation", "o6", "p1", "", Ref("patient", "Patient/p1"), Token("code", loinc, "1234"))),
	)
	clock.Set(tObs1)
	o1Lo, o1Hi := Second("2024-01-05T10:00:00Z")
	o2Lo, o2Hi := Day("2024-01-06")
	apply(t, s,
		Rec("session", "o1", "h1", Res("Observation", "o1", "p1", `,"status":"final"`,
			Ref("patient", "Patient/p1"), Ref("subject", "Patient/p1"), Ref("performer", "Practitioner/pr1"),
			Token("code", loinc, "1234"), Token("status", "", "final"), Date("date", o1Lo, o1Hi),
			Num("score", 1), Qty("value-quantity", 5.5, ucum, "mg"))),
		Rec("session", "o2", "h1", Res("Observation", "o2", "p1", `,"status":"preliminary"`,
			Ref("patient", "Patient/p1"), Ref("subject", "Patient/p1"),
			Token("code", loinc, "5678"), Token("status", "", "preliminary"), Date("date", o2Lo, o2Hi),
			Num("score", 2.5), Qty("value-quantity", 7, ucum, "mg"))),
		Rec("session", "o6", "h2"), // o6 is no longer produced: deleted
	)
	clock.Set(tObs2)
	o4Lo, o4Hi := Day("2024-02-01")
	apply(t, s,
		Rec("session", "o3", "h1", Res("Observation", "o3", "p2", `,"status":"final"`,
			Ref("patient", "Patient/p2"), Ref("subject", "Patient/p2"),
			Token("code", snomed, "1234"), Token("status", "", "final"),
			Date("date", At("2024-01-04T12:00:00Z"), At("2024-01-05T12:00:00Z")))),
		Rec("session", "o4", "h1", Res("Observation", "o4", "p3", `,"status":"final"`,
			Ref("patient", "Patient/p3"), Ref("subject", "Patient/p3"),
			Token("code", loinc, "1234"), Token("code", "http://example.org/local", "abc"), Token("status", "", "final"),
			Date("date", o4Lo, o4Hi), Num("score", 10), Qty("value-quantity", 10, ucum, "kg"))),
		Rec("session", "o5", "h1", Res("Observation", "o5", "", `,"status":"amended"`,
			Token("code", loinc, "9999"), Token("status", "", "amended"))),
	)
}

func dayLo(s string) time.Time { lo, _ := Day(s); return lo }
func dayHi(s string) time.Time { _, hi := Day(s); return hi }

// Value builders for queries.
func tokV(system, code string) store.Value { return store.Value{System: system, Code: code} }
func anyV(code string) store.Value         { return store.Value{Code: code, AnySystem: true} }
func strV(s string) store.Value            { return store.Value{Str: s} }
func exactV(s string) store.Value          { return store.Value{Str: s, Exact: true} }
func numV(p store.Prefix, n float64) store.Value {
	return store.Value{Prefix: p, Num: n}
}
func dayV(p store.Prefix, day string) store.Value {
	lo, hi := Day(day)
	return store.Value{Prefix: p, Lo: lo.UnixMilli(), Hi: hi.UnixMilli()}
}
func monthV(p store.Prefix, month string) store.Value {
	lo, hi := Month(month)
	return store.Value{Prefix: p, Lo: lo.UnixMilli(), Hi: hi.UnixMilli()}
}
func instantV(p store.Prefix, t time.Time) store.Value {
	return store.Value{Prefix: p, Lo: t.UnixMilli(), Hi: t.Add(999 * time.Millisecond).UnixMilli()}
}

func clause(param string, kind store.IndexKind, vs ...store.Value) store.Clause {
	return store.Clause{Param: param, Kind: kind, Values: vs}
}

func missing(param string, kind store.IndexKind, m bool) store.Clause {
	return store.Clause{Param: param, Kind: kind, Missing: &m}
}

// testInsertionOrder: without Sort, matches come in the order resources were
// first stored - not id order - and paging with Offset follows it; an update
// keeps a resource's place.
func testInsertionOrder(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	for _, id := range []string{"zz", "aa", "mm"} {
		apply(t, s, Rec("session", id, "h-"+id, Res("Observation", id, "p1", `,"status":"final"`,
			Ref("patient", "Patient/p1"))))
	}
	apply(t, s, Rec("session", "zz", "h-zz2", Res("Observation", "zz", "p1", `,"status":"amended"`,
		Ref("patient", "Patient/p1"))))
	for _, q := range []store.Query{
		{Type: "Observation"},
		{Type: "Observation", Clauses: []store.Clause{{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}}},
		{Type: "Observation", Patients: []string{"p1"}},
	} {
		got, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		wantStrings(t, "default order", ids(got.Resources), []string{"zz", "aa", "mm"})
	}
	var paged []string
	for off := 0; off < 3; off++ {
		got, err := s.Search(ctx, store.Query{Type: "Observation", Count: 1, Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(got.Resources)...)
	}
	wantStrings(t, "paged", paged, []string{"zz", "aa", "mm"})
}

// testCompartmentMove: a resource that moves to another patient's
// compartment is found by that patient's searches, by reference and by
// access restriction, with a code (a store may index codes per compartment),
// and no longer by the first patient's.
func testCompartmentMove(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	s := newStore(t, NewFakeClock(T0))
	obs := func(patient, hash string) {
		apply(t, s, Rec("session", "s1", hash, Res("Observation", "o1", patient, `,"status":"final","subject":{"reference":"Patient/`+patient+`"}`,
			Ref("patient", "Patient/"+patient), Token("code", "http://loinc.org", "8867-4"))))
	}
	search := func(patient string) []string {
		t.Helper()
		code := store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}}}
		var found []string
		for _, q := range []store.Query{
			{Type: "Observation", Clauses: []store.Clause{code, {Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/" + patient}}}}},
			{Type: "Observation", Clauses: []store.Clause{code}, Patients: []string{patient}},
		} {
			got, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, ids(got.Resources)...)
		}
		return found
	}
	obs("p1", "h1")
	wantStrings(t, "p1 before the move", search("p1"), []string{"o1", "o1"})
	obs("p2", "h2")
	wantStrings(t, "p1 after the move", search("p1"), nil)
	wantStrings(t, "p2 after the move", search("p2"), []string{"o1", "o1"})

	// Access restricted to many compartments (a clinician's panel) with
	// several codes: more patient-and-code lookups than a backend may put in
	// one compound query.
	many := make([]string, 0, 191)
	for i := range 190 {
		many = append(many, fmt.Sprintf("other-%d", i))
	}
	many = append(many, "p2")
	got, err := s.Search(ctx, store.Query{Type: "Observation", Patients: many, Clauses: []store.Clause{
		{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "8867-4"}, {Code: "x"}, {Code: "y"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "codes within 191 compartments", ids(got.Resources), []string{"o1"})
}

func testSearch(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	fixture(t, s, clock)
	const (
		tok  = store.KindToken
		str  = store.KindString
		date = store.KindDate
		ref  = store.KindReference
		num  = store.KindNumber
		qty  = store.KindQuantity
	)

	t.Run("match", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			typ      string
			clauses  []store.Clause
			patients []string
			want     []string
		}{
			{"all of a type", "Observation", nil, nil, []string{"o1", "o2", "o3", "o4", "o5"}},
			{"type without resources", "Condition", []store.Clause{clause("code", tok, anyV("1"))}, nil, nil},
			{"token system and code", "Observation", []store.Clause{clause("code", tok, tokV(loinc, "1234"))}, nil, []string{"o1", "o4"}},
			{"token any system", "Observation", []store.Clause{clause("code", tok, anyV("1234"))}, nil, []string{"o1", "o3", "o4"}},
			{"token without system", "Observation", []store.Clause{clause("status", tok, tokV("", "final"))}, nil, []string{"o1", "o3", "o4"}},
			{"token without system excludes systems", "Observation", []store.Clause{clause("code", tok, tokV("", "1234"))}, nil, nil},
			{"token system only", "Observation", []store.Clause{clause("code", tok, tokV(snomed, ""))}, nil, []string{"o3"}},
			{"token or", "Observation", []store.Clause{clause("code", tok, tokV(loinc, "5678"), tokV("http://example.org/local", "abc"))}, nil, []string{"o2", "o4"}},
			{"token and", "Observation", []store.Clause{clause("code", tok, anyV("1234")), clause("status", tok, tokV("", "final")), clause("code", tok, anyV("abc"))}, nil, []string{"o4"}},
			{"string prefix", "Patient", []store.Clause{clause("name", str, strV("mül"))}, nil, []string{"p1"}},
			{"string prefix normalizes the value", "Patient", []store.Clause{clause("name", str, strV("MU"))}, nil, []string{"p1", "p2"}},
			{"string accents stripped", "Practitioner", []store.Clause{clause("name", str, strV("nunez"))}, nil, []string{"pr1"}},
			{"string any of several values", "Practitioner", []store.Clause{clause("name", str, strV("jos"))}, nil, []string{"pr1"}},
			{"string exact", "Patient", []store.Clause{clause("name", str, exactV("Muller"))}, nil, []string{"p1"}},
			{"string exact is not prefix", "Patient", []store.Clause{clause("name", str, exactV("mul"))}, nil, nil},
			{"string or", "Patient", []store.Clause{clause("name", str, strV("smi"), strV("muel"))}, nil, []string{"p2", "p3"}},
			{"date eq day", "Observation", []store.Clause{clause("date", date, dayV(store.Eq, "2024-01-05"))}, nil, []string{"o1"}},
			{"date no prefix is eq", "Observation", []store.Clause{clause("date", date, dayV("", "2024-01-05"))}, nil, []string{"o1"}},
			{"date eq month", "Observation", []store.Clause{clause("date", date, monthV(store.Eq, "2024-01"))}, nil, []string{"o1", "o2", "o3"}},
			{"date ne", "Observation", []store.Clause{clause("date", date, dayV(store.Ne, "2024-01-05"))}, nil, []string{"o2", "o3", "o4"}},
			{"date gt", "Observation", []store.Clause{clause("date", date, dayV(store.Gt, "2024-01-05"))}, nil, []string{"o2", "o4"}},
			{"date ge", "Observation", []store.Clause{clause("date", date, dayV(store.Ge, "2024-01-05"))}, nil, []string{"o1", "o2", "o4"}},
			{"date lt", "Observation", []store.Clause{clause("date", date, dayV(store.Lt, "2024-01-05"))}, nil, []string{"o3"}},
			{"date le", "Observation", []store.Clause{clause("date", date, dayV(store.Le, "2024-01-05"))}, nil, []string{"o1", "o3"}},
			{"date sa", "Observation", []store.Clause{clause("date", date, dayV(store.Sa, "2024-01-05"))}, nil, []string{"o2", "o4"}},
			{"date eb", "Observation", []store.Clause{clause("date", date, dayV(store.Eb, "2024-01-06"))}, nil, []string{"o1", "o3"}},
			{"date range", "Observation", []store.Clause{clause("date", date, dayV(store.Ge, "2024-01-05")), clause("date", date, dayV(store.Le, "2024-01-31"))}, nil, []string{"o1", "o2"}},
			{"date or", "Observation", []store.Clause{clause("date", date, dayV(store.Eq, "2024-01-06"), dayV(store.Eq, "2024-02-01"))}, nil, []string{"o2", "o4"}},
			{"date instant", "Observation", []store.Clause{clause("date", date, instantV(store.Eq, At("2024-01-05T10:00:00Z")))}, nil, []string{"o1"}},
			{"date on another type", "Patient", []store.Clause{clause("birthdate", date, dayV(store.Eq, "1980-05-01"))}, nil, []string{"p1"}},
			{"reference", "Observation", []store.Clause{clause("patient", ref, strV("Patient/p1"))}, nil, []string{"o1", "o2"}},
			{"reference or", "Observation", []store.Clause{clause("patient", ref, strV("Patient/p1"), strV("Patient/p2"))}, nil, []string{"o1", "o2", "o3"}},
			{"reference on another type", "Condition", []store.Clause{clause("patient", ref, strV("Patient/p1"))}, nil, []string{"z1"}},
			{"number eq", "Observation", []store.Clause{clause("score", num, numV(store.Eq, 2.5))}, nil, []string{"o2"}},
			{"number ne", "Observation", []store.Clause{clause("score", num, numV(store.Ne, 1))}, nil, []string{"o2", "o4"}},
			{"number gt", "Observation", []store.Clause{clause("score", num, numV(store.Gt, 2))}, nil, []string{"o2", "o4"}},
			{"number lt", "Observation", []store.Clause{clause("score", num, numV(store.Lt, 2.5))}, nil, []string{"o1"}},
			{"number ge", "Observation", []store.Clause{clause("score", num, numV(store.Ge, 2.5))}, nil, []string{"o2", "o4"}},
			{"number le", "Observation", []store.Clause{clause("score", num, numV(store.Le, 2.5))}, nil, []string{"o1", "o2"}},
			{"number sa", "Observation", []store.Clause{clause("score", num, numV(store.Sa, 2.5))}, nil, []string{"o4"}},
			{"number eb", "Observation", []store.Clause{clause("score", num, numV(store.Eb, 2.5))}, nil, []string{"o1"}},
			{"quantity", "Observation", []store.Clause{clause("value-quantity", qty, numV(store.Ge, 7))}, nil, []string{"o2", "o4"}},
			{"quantity with unit", "Observation", []store.Clause{clause("value-quantity", qty, store.Value{Prefix: store.Ge, Num: 7, System: ucum, Code: "mg"})}, nil, []string{"o2"}},
			{"_id", "Observation", []store.Clause{clause(store.ParamID, 0, strV("o3"), strV("o2"), strV("nope"))}, nil, []string{"o2", "o3"}},
			{"_id of deleted", "Observation", []store.Clause{clause(store.ParamID, 0, strV("o6"))}, nil, nil},
			{"_id with other clauses", "Observation", []store.Clause{clause(store.ParamID, 0, strV("o1"), strV("o3")), clause("code", tok, tokV(loinc, "1234"))}, nil, []string{"o1"}},
			{"_lastUpdated ge", "Observation", []store.Clause{clause(store.ParamLastUpdated, 0, instantV(store.Ge, tObs2))}, nil, []string{"o3", "o4", "o5"}},
			{"_lastUpdated lt", "Observation", []store.Clause{clause(store.ParamLastUpdated, 0, instantV(store.Lt, tObs2))}, nil, []string{"o1", "o2"}},
			{"_lastUpdated eq day", "Patient", []store.Clause{clause(store.ParamLastUpdated, 0, dayV(store.Eq, "2024-03-01"))}, nil, []string{"p1", "p2", "p3"}},
			{"missing true", "Observation", []store.Clause{missing("score", num, true)}, nil, []string{"o3", "o5"}},
			{"missing false", "Observation", []store.Clause{missing("score", num, false)}, nil, []string{"o1", "o2", "o4"}},
			{"missing true on an unknown param", "Observation", []store.Clause{missing("nothing", tok, true)}, nil, []string{"o1", "o2", "o3", "o4", "o5"}},
			{"missing false on an unknown param", "Observation", []store.Clause{missing("nothing", tok, false)}, nil, nil},
			{"unknown param", "Observation", []store.Clause{clause("nothing", tok, anyV("x"))}, nil, nil},
			{"param of another type", "Patient", []store.Clause{clause("code", tok, anyV("1234"))}, nil, nil},
			{"patients restriction", "Observation", nil, []string{"p1"}, []string{"o1", "o2"}},
			{"patients restriction with clauses", "Observation", []store.Clause{clause("code", tok, anyV("1234"))}, []string{"p1", "p2"}, []string{"o1", "o3"}},
			{"patients restriction with selective clause", "Observation", []store.Clause{clause("patient", ref, strV("Patient/p2"))}, []string{"p1"}, nil},
			{"patients restriction excludes no compartment", "Practitioner", nil, []string{"p1"}, nil},
			{"patients restriction on Patient", "Patient", nil, []string{"p2", "p3"}, []string{"p2", "p3"}},
			{"patients by reference with code", "Observation", []store.Clause{clause("code", tok, anyV("1234")), clause("patient", ref, strV("Patient/p1"), strV("Patient/p2"))}, nil, []string{"o1", "o3"}},
			{"patients by reference with code system only", "Observation", []store.Clause{clause("code", tok, tokV(snomed, "")), clause("patient", ref, strV("Patient/p2"))}, nil, []string{"o3"}},
			{"patient code date", "Observation", []store.Clause{
				clause("patient", ref, strV("Patient/p1")), clause("code", tok, tokV(loinc, "1234")),
				clause("date", date, dayV(store.Ge, "2024-01-01")), clause("date", date, dayV(store.Le, "2024-01-31")),
			}, nil, []string{"o1"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Search(ctx, store.Query{Type: tc.typ, Clauses: tc.clauses, Patients: tc.patients, Total: true})
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "ids", ids(got.Resources), tc.want)
				if got.Total != len(tc.want) || got.More {
					t.Errorf("Total = %d, More = %v; want %d, false", got.Total, got.More, len(tc.want))
				}
				for _, r := range got.Resources {
					if r.Type != tc.typ || r.Version == 0 || len(r.Body) == 0 || r.LastUpdated.IsZero() {
						t.Errorf("incomplete resource %+v", r)
					}
				}
			})
		}
	})

	t.Run("sort", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			sort []store.Sort
			want []string
		}{
			{"default in insertion order", nil, []string{"o1", "o2", "o3", "o4", "o5"}},
			{"_id desc", []store.Sort{{Param: store.ParamID, Desc: true}}, []string{"o5", "o4", "o3", "o2", "o1"}},
			{"_lastUpdated desc then id", []store.Sort{{Param: store.ParamLastUpdated, Desc: true}}, []string{"o3", "o4", "o5", "o1", "o2"}},
			{"_lastUpdated asc", []store.Sort{{Param: store.ParamLastUpdated}}, []string{"o1", "o2", "o3", "o4", "o5"}},
			{"date asc by range start, missing last", []store.Sort{{Param: "date", Kind: date}}, []string{"o3", "o1", "o2", "o4", "o5"}},
			{"date desc by range end, missing last", []store.Sort{{Param: "date", Kind: date, Desc: true}}, []string{"o4", "o2", "o3", "o1", "o5"}},
			{"number desc", []store.Sort{{Param: "score", Kind: num, Desc: true}}, []string{"o4", "o2", "o1", "o3", "o5"}},
			{"number asc", []store.Sort{{Param: "score", Kind: num}}, []string{"o1", "o2", "o4", "o3", "o5"}},
			{"token by lowest code", []store.Sort{{Param: "code", Kind: tok}}, []string{"o1", "o3", "o4", "o2", "o5"}},
			{"token desc by highest code", []store.Sort{{Param: "code", Kind: tok, Desc: true}}, []string{"o4", "o5", "o2", "o1", "o3"}},
			{"two keys", []store.Sort{{Param: "status", Kind: tok}, {Param: "date", Kind: date, Desc: true}}, []string{"o5", "o4", "o3", "o1", "o2"}},
			{"unknown param keeps insertion order", []store.Sort{{Param: "nothing", Kind: str}}, []string{"o1", "o2", "o3", "o4", "o5"}},
			{"reference", []store.Sort{{Param: "patient", Kind: ref, Desc: true}}, []string{"o4", "o3", "o1", "o2", "o5"}},
			{"quantity", []store.Sort{{Param: "value-quantity", Kind: qty}}, []string{"o1", "o2", "o4", "o3", "o5"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Search(ctx, store.Query{Type: "Observation", Sort: tc.sort})
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "ids", ids(got.Resources), tc.want)
				if got.Total != -1 {
					t.Errorf("Total = %d without Total asked, want -1", got.Total)
				}
			})
		}
		got, err := s.Search(ctx, store.Query{Type: "Patient", Sort: []store.Sort{{Param: "name", Kind: str}}})
		if err != nil {
			t.Fatal(err)
		}
		wantStrings(t, "string sort", ids(got.Resources), []string{"p2", "p1", "p3"})
	})

	t.Run("pages", func(t *testing.T) {
		for _, tc := range []struct {
			name          string
			count, offset int
			countOnly     bool
			want          []string
			more          bool
		}{
			{"first page", 2, 0, false, []string{"o1", "o2"}, true},
			{"middle page", 2, 2, false, []string{"o3", "o4"}, true},
			{"last page", 2, 4, false, []string{"o5"}, false},
			{"exact last page", 1, 4, false, []string{"o5"}, false},
			{"past the end", 2, 10, false, nil, false},
			{"everything", 0, 0, false, []string{"o1", "o2", "o3", "o4", "o5"}, false},
			{"offset without count", 0, 3, false, []string{"o4", "o5"}, false},
			{"page of all", 5, 0, false, []string{"o1", "o2", "o3", "o4", "o5"}, false},
			{"count only", 2, 0, true, nil, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Search(ctx, store.Query{Type: "Observation", Count: tc.count, Offset: tc.offset, CountOnly: tc.countOnly, Total: true})
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "ids", ids(got.Resources), tc.want)
				if got.More != tc.more || got.Total != 5 {
					t.Errorf("More = %v, Total = %d; want %v, 5", got.More, got.Total, tc.more)
				}
			})
		}
		got, err := s.Search(ctx, store.Query{Type: "Observation", CountOnly: true, Clauses: []store.Clause{clause("code", tok, anyV("1234"))}})
		if err != nil || got.Total != 3 || len(got.Resources) != 0 {
			t.Errorf("CountOnly = %+v, %v; want total 3", got, err)
		}
		got, err = s.Search(ctx, store.Query{Type: "Observation", Count: 2, Offset: 1, Sort: []store.Sort{{Param: "date", Kind: date}}})
		if err != nil {
			t.Fatal(err)
		}
		wantStrings(t, "sorted page", ids(got.Resources), []string{"o1", "o2"})
		if !got.More || got.Total != -1 {
			t.Errorf("sorted page More = %v Total = %d", got.More, got.Total)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			q    store.Query
		}{
			{"no type", store.Query{}},
			{"no values", store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: tok}}}},
			{"unknown kind", store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: 42, Values: []store.Value{anyV("1")}}}}},
			{"unknown prefix", store.Query{Type: "Observation", Clauses: []store.Clause{clause("date", date, store.Value{Prefix: "xx"})}}},
			{"unknown sort kind", store.Query{Type: "Observation", Sort: []store.Sort{{Param: "code"}}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := s.Search(ctx, tc.q); err == nil {
					t.Error("Search succeeded")
				}
			})
		}
	})
}
