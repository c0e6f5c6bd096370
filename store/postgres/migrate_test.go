package postgres_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// execAll runs statements on the schema of url.
func execAll(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, stmt := range stmts {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// TestMigrationBindsExistingClientsToNothing: a client registered before
// migration 0005 reads as an unbound EHR client (no organization, role "").
func TestMigrationBindsExistingClientsToNothing(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s, err := postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	execAll(t, url,
		`ALTER TABLE clients DROP COLUMN organization`,
		`ALTER TABLE clients DROP COLUMN role`,
		`DELETE FROM schema_version WHERE version >= 5`,
		`INSERT INTO clients (id, name, kind, secret_hash, redirect_uris, launch_url, scopes, origins, jwks_url)
		 VALUES ('ehr-1', 'EHR', 'backend', '', '{}', '', '{system/*.rs}', '{}', 'https://ehr.example/jwks')`)
	s, err = postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.GetClient(ctx, "ehr-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Organization != "" || c.Role != "" || c.JWKSURL != "https://ehr.example/jwks" || !slices.Equal(c.Scopes, []string{"system/*.rs"}) {
		t.Errorf("client after migration = %+v, want unbound and otherwise unchanged", c)
	}
}

// TestMigrationIndexesSecurityLabels: resources stored before migration
// 0006 (bodies with meta.security, no _security rows) get their labels'
// rows, so _security:not=R excludes them.
func TestMigrationIndexesSecurityLabels(t *testing.T) {
	ctx := context.Background()
	url := freshSchema(t)
	s, err := postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		conf = `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}`
		psy  = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY","display":"psychiatry disorder information sensitivity"}`
	)
	// A canonical body: meta right after id (store.StampMeta).
	labelled := func(typ, id, patient, labels, rest string, index ...store.IndexRow) store.ResourceWrite {
		return store.ResourceWrite{Type: typ, ID: id, Patient: patient, Index: index,
			Body: []byte(`{"id":"` + id + `","meta":{"security":[` + labels + `]},"resourceType":"` + typ + `"` + rest + `}`)}
	}
	obs := func(id, patient, labels, rest string) store.ResourceWrite {
		return labelled("Observation", id, patient, labels, rest,
			storetest.Ref("patient", "Patient/"+patient), storetest.Token("code", "http://loinc.org", "44260-8"))
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "s1", "h1",
			obs("o-r", "p1", psy+","+conf, ""),
			obs("o-psy", "p1", psy, `,"note":[{"text":"a NUL \u0000 in JSON text"}]`),
			obs("o-nocode", "p1", `{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality"}`, ""),
			storetest.Res("Observation", "o-plain", "p1", `,"status":"final","note":[{"text":"no security here"}]`, storetest.Ref("patient", "Patient/p1")),
			labelled("Condition", "c-r", "p2", conf, "", storetest.Ref("patient", "Patient/p2")),
			labelled("Practitioner", "pr-r", "", conf, ""),
		),
		storetest.Rec("session", "s2", "h1", obs("o-gone", "p1", conf, "")),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "s2", "h2")}); err != nil { // o-gone deleted
		t.Fatal(err)
	}
	s.Close()
	execAll(t, url, `DELETE FROM schema_version WHERE version >= 6`)

	s, err = postgres.Open(ctx, url, store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	notR := store.Clause{Param: "_security", Kind: store.KindToken, Not: true,
		Values: []store.Value{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}}}
	psyC := store.Clause{Param: "_security", Kind: store.KindToken, Values: []store.Value{{Code: "PSY", AnySystem: true}}}
	code := store.Clause{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: "44260-8"}}}
	pat := store.Clause{Param: "patient", Kind: store.KindReference, Values: []store.Value{{Str: "Patient/p1"}}}
	for _, tc := range []struct {
		name string
		q    store.Query
		want []string
	}{
		{"R excluded", store.Query{Type: "Observation", Clauses: []store.Clause{notR}}, []string{"o-psy", "o-nocode", "o-plain"}},
		{"PSY found", store.Query{Type: "Observation", Clauses: []store.Clause{psyC}}, []string{"o-r", "o-psy"}},
		// idx_token_patient: the rows carry their compartment.
		{"within the compartment, by code", store.Query{Type: "Observation", Clauses: []store.Clause{pat, code, notR}}, []string{"o-psy", "o-nocode"}},
		{"within the compartment, by label", store.Query{Type: "Observation", Clauses: []store.Clause{pat, psyC}}, []string{"o-r", "o-psy"}},
		{"other types", store.Query{Type: "Condition", Clauses: []store.Clause{notR}}, nil},
		{"no compartment", store.Query{Type: "Practitioner", Clauses: []store.Clause{notR}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Search(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got.Resources {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("ids = %v, want %v", ids, tc.want)
			}
		})
	}
}
