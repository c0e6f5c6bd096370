package fhir

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

const (
	smartIssuer = "http://localhost:8080/auth"
	chMissing   = `Bearer realm="KetaBridge"`
	chInvalid   = `Bearer realm="KetaBridge", error="invalid_token"`
	chScope     = `Bearer realm="KetaBridge", error="insufficient_scope"`
	catSystem   = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// smartAuthStore is an in-memory auth.KeyStore and auth.RevocationStore: the
// state auth.Tokens verifies against.
type smartAuthStore struct {
	mu      sync.Mutex
	keys    []store.SigningKey
	revoked map[string]time.Time
}

var (
	_ auth.KeyStore        = (*smartAuthStore)(nil)
	_ auth.RevocationStore = (*smartAuthStore)(nil)
)

func (s *smartAuthStore) PutKey(_ context.Context, k store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	return nil
}

func (s *smartAuthStore) ListKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys), nil
}

func (s *smartAuthStore) RevokeGrant(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[id] = at
	return nil
}

func (s *smartAuthStore) RevokedSince(_ context.Context, t time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, at := range s.revoked {
		if !at.Before(t) {
			out = append(out, id)
		}
	}
	return out, nil
}

// smartKit is one key set shared by the SMART tests (RSA generation is slow).
var smartKit = sync.OnceValues(func() (*auth.KeySet, *smartAuthStore) {
	st := &smartAuthStore{revoked: map[string]time.Time{}}
	ks, err := auth.LoadKeySet(context.Background(), st, fixedClock{time.Now()})
	if err != nil {
		panic(err)
	}
	return ks, st
})

// smartTokens is a token minter and verifier on the shared key set and
// revocations.
func smartTokens(t testing.TB, clock store.Clock) *auth.Tokens {
	t.Helper()
	ks, st := smartKit()
	revs, err := auth.NewRevocations(context.Background(), st, clock)
	if err != nil {
		t.Fatal(err)
	}
	tk := auth.NewTokens(ks, smartIssuer, testBase, clock)
	tk.SetRevocations(revs)
	return tk
}

type smartEnv struct {
	*testEnv
	tokens *auth.Tokens
	keys   *auth.KeySet
	n      int
}

// newSMARTEnv serves the fixture plus granular-scope data behind SMART:
// observations of p1 in the categories vital-signs (v1), survey (s1),
// laboratory (l1); v2 of p2 (vital-signs); provenance pv1 of p1 pointing at
// v1, s1 and l1.
func newSMARTEnv(t *testing.T) *smartEnv {
	t.Helper()
	ks, _ := smartKit()
	tk := smartTokens(t, store.SystemClock{})
	env := newEnvWith(t, Options{Verifier: tk})
	for _, o := range []struct{ id, patient, cat string }{{"v1", "p1", "vital-signs"}, {"s1", "p1", "survey"}, {"l1", "p1", "laboratory"}, {"v2", "p2", "vital-signs"}} {
		rows := append(obsRows(o.patient), store.IndexRow{Param: "category", Kind: store.KindToken, System: catSystem, Code: o.cat})
		env.fs.put("Observation", o.id, o.patient, t0, obsBody(o.id, o.patient), rows...)
	}
	env.fs.put("Provenance", "pv1", "p1", t0, `{"id":"pv1","target":[{"reference":"Observation/v1"}],"recorded":"2024-03-01T10:00:00Z","agent":[{"who":{"reference":"Practitioner/dr1"}}],"resourceType":"Provenance"}`,
		store.IndexRow{Param: "target", Kind: store.KindReference, Value: "Observation/v1"},
		store.IndexRow{Param: "target", Kind: store.KindReference, Value: "Observation/s1"},
		store.IndexRow{Param: "target", Kind: store.KindReference, Value: "Observation/l1"},
		store.IndexRow{Param: "patient", Kind: store.KindReference, Value: "Patient/p1"})
	return &smartEnv{testEnv: env, tokens: tk, keys: ks}
}

// token mints an access token of a fresh grant.
func (e *smartEnv) token(t testing.TB, scope, patient string) string {
	t.Helper()
	e.n++
	tok, _, err := e.tokens.Access(auth.AccessRequest{GrantID: "g" + string(rune('a'+e.n%26)) + time.Now().Format("150405.000000000"),
		ClientID: "app", Subject: "u1", Scope: scope, Patient: patient})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

// forgeries returns tokens NEG-36 to NEG-38 must reject, built from a valid
// one.
func (e *smartEnv) forgeries(t *testing.T) map[string]string {
	t.Helper()
	valid := e.token(t, "patient/*.rs", "p1")
	parts := strings.Split(valid, ".")
	var claims jwt.MapClaims
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(e.keys.JWKS(), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %v", err)
	}
	kid := set.Keys[0].KeyID
	der, _ := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"], hs.Header["typ"] = kid, "at+jwt"
	hsTok, _ := hs.SignedString(pubPEM)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	none.Header["kid"], none.Header["typ"] = kid, "at+jwt"
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	sig := []byte(parts[2])
	sig[5] = map[bool]byte{true: 'B', false: 'A'}[sig[5] == 'A']
	past := auth.NewTokens(e.keys, smartIssuer, testBase, fixedClock{time.Now().Add(-2 * time.Hour)})
	expired, _, _ := past.Access(auth.AccessRequest{GrantID: "gx", ClientID: "app", Scope: "patient/*.rs", Patient: "p1"})
	other := auth.NewTokens(e.keys, smartIssuer, "http://other.example/fhir", store.SystemClock{})
	otherAud, _, _ := other.Access(auth.AccessRequest{GrantID: "gy", ClientID: "app", Scope: "patient/*.rs", Patient: "p1"})
	idTok, _ := e.tokens.IDToken(auth.IDTokenRequest{ClientID: testBase, Subject: "u1"})
	return map[string]string{
		"garbage":                   "garbage",
		"bad signature":             parts[0] + "." + parts[1] + "." + string(sig),
		"alg none":                  noneTok,
		"HS256 with the public key": hsTok,
		"expired":                   expired,
		"other FHIR base as aud":    otherAud,
		"id_token":                  idTok,
	}
}

func TestSMARTAuthentication(t *testing.T) {
	env := newSMARTEnv(t)
	forged := env.forgeries(t)
	targets := []string{"/fhir/Patient/p1", "/fhir/Observation", "/fhir/Patient/p1/$everything", "/fhir/Patient/p1/_history", "/fhir/Patient/p1/_history/1"}
	tests := []struct {
		name      string
		hdr       []string
		status    int
		challenge string
	}{
		{"NEG-35 no Authorization", nil, 401, chMissing},
		{"NEG-35 other scheme", []string{"Authorization", "Basic dTpw"}, 401, chMissing},
		{"NEG-36 garbage", bearer(forged["garbage"]), 401, chInvalid},
		{"NEG-36 malformed credentials", []string{"Authorization", "Bearer a b"}, 401, chInvalid},
		{"NEG-36 bad signature", bearer(forged["bad signature"]), 401, chInvalid},
		{"NEG-36 alg none", bearer(forged["alg none"]), 401, chInvalid},
		{"NEG-36 HS256 keyed with the public key", bearer(forged["HS256 with the public key"]), 401, chInvalid},
		{"NEG-37 expired", bearer(forged["expired"]), 401, chInvalid},
		{"NEG-38 aud of another FHIR base", bearer(forged["other FHIR base as aud"]), 401, chInvalid},
		{"id_token as bearer", bearer(forged["id_token"]), 401, chInvalid},
		{"valid, lower-case scheme", []string{"Authorization", "bearer " + env.token(t, "patient/*.rs", "p1")}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range targets {
				w := env.do("GET", target, "", tc.hdr...)
				if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("%s: WWW-Authenticate = %q, want %q", target, got, tc.challenge)
				}
				if tc.status == 200 {
					if w.Code != 200 {
						t.Errorf("%s: status %d: %s", target, w.Code, w.Body)
					}
					continue
				}
				outcome(t, w, tc.status, "login")
				if strings.Contains(w.Body.String(), "Doe") {
					t.Errorf("%s: data leaked", target)
				}
			}
		})
	}
	t.Run("metadata needs no token", func(t *testing.T) {
		if w := env.do("GET", "/fhir/metadata", ""); w.Code != 200 {
			t.Errorf("status %d", w.Code)
		}
	})
	t.Run("NEG-39 revoked after use", func(t *testing.T) {
		tok := env.token(t, "patient/*.rs", "p1")
		if w := env.do("GET", "/fhir/Patient/p1", "", bearer(tok)...); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		info, err := env.tokens.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := env.tokens.Revocations(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := rev.Revoke(context.Background(), info.GrantID, time.Now()); err != nil {
			t.Fatal(err)
		}
		w := env.do("GET", "/fhir/Patient/p1", "", bearer(tok)...)
		outcome(t, w, 401, "login")
		if got := w.Header().Get("WWW-Authenticate"); got != chInvalid {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	})
}

// smartCase is one request under a token and its expected answer: status,
// WWW-Authenticate, and for 200 the Bundle's entries (or, for a read, "")
// and total (-1: not checked).
type smartCase struct {
	name, scope, patient, method, target string
	status                               int
	challenge                            string
	entries                              string
	total                                float64
}

func runSMART(t *testing.T, env *smartEnv, tests []smartCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			var body string
			hdr := bearer(env.token(t, tc.scope, tc.patient))
			if method != "GET" && method != "DELETE" {
				body = `{"resourceType":"Observation"}`
				hdr = append(hdr, "Content-Type", "application/fhir+json")
			}
			w := env.do(method, tc.target, body, hdr...)
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			switch tc.status {
			case 200:
				if w.Code != 200 {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				m := parseFHIR(t, w.Body.Bytes())
				if m["resourceType"] != "Bundle" {
					if tc.entries != "" {
						t.Errorf("not a Bundle: %v", m["resourceType"])
					}
					return
				}
				if got := strings.Join(entryIDs(m), " "); got != tc.entries {
					t.Errorf("entries %q, want %q", got, tc.entries)
				}
				if tc.total >= 0 && m["total"] != tc.total {
					t.Errorf("total %v, want %v", m["total"], tc.total)
				}
			case 401:
				outcome(t, w, 401, "login")
			case 403:
				outcome(t, w, 403, "forbidden")
			case 404:
				outcome(t, w, 404, "not-found")
			case 405:
				outcome(t, w, 405, "not-supported")
			default:
				t.Fatalf("bad case status %d", tc.status)
			}
		})
	}
}

func TestSMARTScopes(t *testing.T) {
	env := newSMARTEnv(t)
	p1Obs := "match:Observation/l1 match:Observation/o01 match:Observation/o02"
	runSMART(t, env, []smartCase{
		// NEG-40: a patient-A token sees only A.
		{name: "NEG-40 read own patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient/p1", status: 200},
		{name: "NEG-40 read other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient/p2", status: 403, challenge: chScope},
		{name: "NEG-40 read other patient's observation", scope: "patient/*.rs", patient: "p1", target: "/fhir/Observation/x1", status: 403, challenge: chScope},
		{name: "NEG-40 vread other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient/p2/_history/1", status: 403, challenge: chScope},
		{name: "NEG-40 history other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient/p2/_history", status: 403, challenge: chScope},
		{name: "NEG-40 search other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Observation?patient=p2", status: 403, challenge: chScope},
		{name: "NEG-40 search other subject", scope: "patient/*.rs", patient: "p1", target: "/fhir/Observation?subject=Patient/p2", status: 403, challenge: chScope},
		{name: "NEG-40 Patient by other _id", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient?_id=p2", status: 403, challenge: chScope},
		{name: "NEG-40 everything other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient/p2/$everything", status: 403, challenge: chScope},
		{name: "NEG-40 search without patient filter", scope: "patient/*.rs", patient: "p1", target: "/fhir/Observation?_count=3", status: 200, entries: p1Obs, total: -1},
		{name: "NEG-40 search own and other patient", scope: "patient/*.rs", patient: "p1", target: "/fhir/Patient?_id=p1,p2", status: 200, entries: "match:Patient/p1", total: 1},
		{name: "patient token for a patient that does not exist", scope: "patient/*.rs", patient: "p9", target: "/fhir/Observation", status: 200, entries: "", total: 0},
		{name: "patient token for a patient that does not exist reads", scope: "patient/*.rs", patient: "p9", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "patient scope without a patient in context", scope: "patient/*.rs", target: "/fhir/Observation", status: 403, challenge: chScope},
		{name: "user scope reaches every patient", scope: "user/Observation.rs", target: "/fhir/Observation/x1", status: 200},
		{name: "system scope reaches every patient", scope: "system/*.read", target: "/fhir/Patient/p2", status: 200},
		// NEG-41: type not granted.
		{name: "NEG-41 read type not granted", scope: "patient/Observation.rs", patient: "p1", target: "/fhir/Patient/p1", status: 403, challenge: chScope},
		{name: "NEG-41 search type not granted", scope: "patient/Observation.rs", patient: "p1", target: "/fhir/Encounter?patient=p1", status: 403, challenge: chScope},
		{name: "NEG-41 everything without Patient read", scope: "patient/Observation.rs", patient: "p1", target: "/fhir/Patient/p1/$everything", status: 403, challenge: chScope},
		{name: "NEG-41 include of a type not granted is left out", scope: "patient/Observation.rs", patient: "p1", target: "/fhir/Observation?_id=o01&_include=Observation:performer&_include=Observation:subject", status: 200, entries: "match:Observation/o01", total: 1},
		{name: "only resource scopes count", scope: "openid fhirUser launch/patient", patient: "p1", target: "/fhir/Patient/p1", status: 403, challenge: chScope},
		// NEG-42: permission letters.
		{name: "NEG-42 rs token creates", scope: "patient/Observation.rs", patient: "p1", method: "POST", target: "/fhir/Observation", status: 403, challenge: chScope},
		{name: "NEG-42 rs token updates", scope: "patient/Observation.rs", patient: "p1", method: "PUT", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "NEG-42 rs token patches", scope: "patient/Observation.rs", patient: "p1", method: "PATCH", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "NEG-42 rs token deletes", scope: "patient/Observation.rs", patient: "p1", method: "DELETE", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "NEG-42 v1 read token writes", scope: "patient/Observation.read", patient: "p1", method: "DELETE", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "NEG-42 r token searches", scope: "patient/Observation.r", patient: "p1", target: "/fhir/Observation", status: 403, challenge: chScope},
		{name: "NEG-42 s token reads", scope: "patient/Observation.s", patient: "p1", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "NEG-42 s token vreads", scope: "patient/Observation.s", patient: "p1", target: "/fhir/Observation/o01/_history/1", status: 403, challenge: chScope},
		{name: "NEG-42 s token searches", scope: "patient/Observation.s", patient: "p1", target: "/fhir/Observation?_id=o01", status: 200, entries: "match:Observation/o01", total: 1},
		{name: "NEG-42 r token reads", scope: "patient/Observation.r", patient: "p1", target: "/fhir/Observation/o01", status: 200},
		{name: "write scope meets the read-only API", scope: "patient/Observation.cruds", patient: "p1", method: "POST", target: "/fhir/Observation", status: 405},
		{name: "undefined suffix grants nothing", scope: "patient/Observation.dus", patient: "p1", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		// $everything returns only the types the token may search.
		{name: "everything limited to granted types", scope: "patient/Patient.r patient/Encounter.s", patient: "p1", target: "/fhir/Patient/p1/$everything", status: 200,
			entries: "match:Patient/p1 match:Encounter/e1", total: 2},
		{name: "everything with _type outside the grant", scope: "patient/Patient.r patient/Encounter.s", patient: "p1", target: "/fhir/Patient/p1/$everything?_type=Observation", status: 200,
			entries: "", total: 0},
	})
}

func TestSMARTGranular(t *testing.T) {
	env := newSMARTEnv(t)
	const scope = "patient/Patient.rs patient/Provenance.rs patient/Observation.rs?category=vital-signs " +
		"patient/Observation.rs?category=" + catSystem + "|survey"
	runSMART(t, env, []smartCase{
		{name: "search is filtered", scope: scope, patient: "p1", target: "/fhir/Observation", status: 200,
			entries: "match:Observation/s1 match:Observation/v1", total: 2},
		{name: "search with own filter is ANDed", scope: scope, patient: "p1", target: "/fhir/Observation?category=survey", status: 200,
			entries: "match:Observation/s1", total: 1},
		{name: "search for an excluded category is empty", scope: scope, patient: "p1", target: "/fhir/Observation?category=laboratory", status: 200,
			entries: "", total: 0},
		{name: "paging counts only visible", scope: scope, patient: "p1", target: "/fhir/Observation?_count=1&_total=accurate", status: 200,
			entries: "match:Observation/s1", total: 2},
		{name: "read in category", scope: scope, patient: "p1", target: "/fhir/Observation/v1", status: 200},
		{name: "read other category", scope: scope, patient: "p1", target: "/fhir/Observation/l1", status: 403, challenge: chScope},
		{name: "read uncategorized", scope: scope, patient: "p1", target: "/fhir/Observation/o01", status: 403, challenge: chScope},
		{name: "read category of other patient", scope: scope, patient: "p1", target: "/fhir/Observation/v2", status: 403, challenge: chScope},
		{name: "vread other category", scope: scope, patient: "p1", target: "/fhir/Observation/l1/_history/1", status: 403, challenge: chScope},
		{name: "history other category", scope: scope, patient: "p1", target: "/fhir/Observation/l1/_history", status: 403, challenge: chScope},
		{name: "history in category", scope: scope, patient: "p1", target: "/fhir/Observation/v1/_history", status: 200,
			entries: ":Observation/v1", total: 1},
		{name: "include passes the filters", scope: scope, patient: "p1", target: "/fhir/Provenance?_include=Provenance:target", status: 200,
			entries: "match:Provenance/pv1 include:Observation/v1 include:Observation/s1", total: 1},
		{name: "revinclude passes the filters", scope: scope, patient: "p1", target: "/fhir/Patient?_id=p1&_revinclude=Observation:subject", status: 200,
			entries: "match:Patient/p1 include:Observation/s1 include:Observation/v1", total: 1},
		{name: "everything passes the filters", scope: scope, patient: "p1", target: "/fhir/Patient/p1/$everything", status: 200,
			entries: "match:Patient/p1 match:Observation/s1 match:Observation/v1 match:Provenance/pv1", total: 4},
		{name: "everything pages under filters", scope: scope, patient: "p1", target: "/fhir/Patient/p1/$everything?_count=2&_offset=1", status: 200,
			entries: "match:Observation/s1 match:Observation/v1", total: 4},
		{name: "everything _type under filters", scope: scope, patient: "p1", target: "/fhir/Patient/p1/$everything?_type=Observation", status: 200,
			entries: "match:Observation/s1 match:Observation/v1", total: 2},
		{name: "system granular scope", scope: "system/Observation.rs?category=vital-signs", target: "/fhir/Observation?code=8867-4", status: 200,
			entries: "match:Observation/v1 match:Observation/v2", total: 2},
		{name: "union across parameters fails closed", scope: "patient/Observation.rs?category=vital-signs patient/Observation.rs?code=8867-4", patient: "p1",
			target: "/fhir/Observation", status: 403, challenge: chScope},
		{name: "unknown filter parameter fails closed", scope: "patient/Observation.rs?colour=red", patient: "p1",
			target: "/fhir/Observation", status: 403, challenge: chScope},
		{name: "filters ANDed within one scope", scope: "patient/Observation.rs?category=vital-signs&code=http://loinc.org|8867-4", patient: "p1",
			target: "/fhir/Observation", status: 200, entries: "match:Observation/v1", total: 1},
		{name: "unfiltered scope wins the union", scope: "patient/Observation.rs?category=vital-signs patient/Observation.rs", patient: "p1",
			target: "/fhir/Observation/l1", status: 200},
	})
	t.Run("filters are in the store query before it runs", func(t *testing.T) {
		env.do("GET", "/fhir/Observation", "", bearer(env.token(t, scope, "p1"))...)
		q := env.fs.queries[len(env.fs.queries)-1]
		want := store.Clause{Param: "category", Kind: store.KindToken, Values: []store.Value{
			{Code: "vital-signs", AnySystem: true}, {System: catSystem, Code: "survey"}}}
		if len(q.Clauses) != 1 || !clauseEqual(q.Clauses[0], want) || !slices.Equal(q.Patients, []string{"p1"}) {
			t.Errorf("query %+v", q)
		}
	})
}

func clauseEqual(a, b store.Clause) bool {
	return a.Param == b.Param && a.Kind == b.Kind && slices.Equal(a.Values, b.Values) && a.Missing == nil && b.Missing == nil
}

func TestFilterClauses(t *testing.T) {
	cat := func(code string) auth.Filter { return auth.Filter{Param: "category", Code: code} }
	tests := []struct {
		name string
		typ  string
		sets [][]auth.Filter
		want []store.Clause
		fail bool
	}{
		{name: "none", typ: "Observation"},
		{name: "one filter", typ: "Observation", sets: [][]auth.Filter{{cat("vital-signs")}},
			want: []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "vital-signs", AnySystem: true}}}}},
		{name: "system and code", typ: "Condition", sets: [][]auth.Filter{{{Param: "category", System: "http://x", Code: "problem-list-item"}}},
			want: []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{System: "http://x", Code: "problem-list-item"}}}}},
		{name: "union on one param", typ: "Observation", sets: [][]auth.Filter{{cat("a")}, {cat("b")}, {cat("a")}},
			want: []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "a", AnySystem: true}, {Code: "b", AnySystem: true}}}}},
		{name: "AND in one set", typ: "Observation", sets: [][]auth.Filter{{cat("a"), {Param: "code", Code: "c"}}},
			want: []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "a", AnySystem: true}}},
				{Param: "code", Kind: store.KindToken, Values: []store.Value{{Code: "c", AnySystem: true}}}}},
		{name: "superset dropped", typ: "Observation", sets: [][]auth.Filter{{cat("a"), {Param: "code", Code: "c"}}, {cat("a")}},
			want: []store.Clause{{Param: "category", Kind: store.KindToken, Values: []store.Value{{Code: "a", AnySystem: true}}}}},
		{name: "reference param", typ: "Observation", sets: [][]auth.Filter{{{Param: "encounter", Code: "Encounter/e1"}}},
			want: []store.Clause{{Param: "encounter", Kind: store.KindReference, Values: []store.Value{{Str: "Encounter/e1"}}}}},
		{name: "union across params", typ: "Observation", sets: [][]auth.Filter{{cat("a")}, {{Param: "code", Code: "c"}}}, fail: true},
		{name: "union of ANDed sets", typ: "Observation", sets: [][]auth.Filter{{cat("a"), {Param: "code", Code: "c"}}, {cat("b")}}, fail: true},
		{name: "unknown param", typ: "Observation", sets: [][]auth.Filter{{{Param: "colour", Code: "red"}}}, fail: true},
		{name: "date param", typ: "Observation", sets: [][]auth.Filter{{{Param: "date", Code: "2024"}}}, fail: true},
		{name: "unknown type", typ: "Spaceship", sets: [][]auth.Filter{{cat("a")}}, fail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FilterClauses(tc.typ, tc.sets)
			if (err != nil) != tc.fail {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if !clauseEqual(got[i], tc.want[i]) {
					t.Errorf("clause %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// BenchmarkReadSMART is BenchmarkRead with a verified (cached) SMART token:
// the cost of authorization on the hottest path.
func BenchmarkReadSMART(b *testing.B) {
	tk := smartTokens(b, store.SystemClock{})
	s, err := New(Options{
		Store: fixture(), Base: testBase, Verifier: tk, Clock: fixedClock{t0},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	s.Register(e)
	tok, _, err := tk.Access(auth.AccessRequest{GrantID: "gb", ClientID: "app", Scope: "patient/*.rs", Patient: "p1"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/fhir/Patient/p1", nil)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// TestSMARTUnservedPathsNeedAToken: paths and types the API does not serve
// (Bulk Data $export today, an unknown type, a write on the base) answer an
// unauthenticated caller 401 with the Bearer challenge, not 404/405, so the
// API's shape is not probeable without a token (docs/design/security.md RS-1,
// NEG-44); with a valid token they are the ordinary 404/405 OperationOutcomes.
func TestSMARTUnservedPathsNeedAToken(t *testing.T) {
	env := newSMARTEnv(t)
	forged := env.forgeries(t)
	valid := env.token(t, "system/*.rs", "")
	for _, tc := range []struct {
		method, path string
		known        int
	}{
		{"GET", "/fhir/$export", 404},
		{"GET", "/fhir/Patient/$export", 404},
		{"GET", "/fhir/Group/g1/$export", 404},
		{"GET", "/fhir/NoSuchType", 404},
		{"GET", "/fhir/NoSuchType/x", 404},
		{"GET", "/fhir/a/b/c/d/e", 404},
		{"POST", "/fhir/Patient/x/_history", 405},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			for name, hdr := range map[string][]string{"no token": nil, "garbage": bearer(forged["garbage"])} {
				w := env.do(tc.method, tc.path, "", hdr...)
				if w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: %d %q", name, w.Code, w.Header().Get("WWW-Authenticate"))
				}
				checkConformance(t, w.Body.Bytes())
			}
			if w := env.do(tc.method, tc.path, "", bearer(valid)...); w.Code != tc.known {
				t.Errorf("valid token: %d, want %d", w.Code, tc.known)
			}
		})
	}
	// The CapabilityStatement stays open.
	if w := env.do("GET", "/fhir/metadata", ""); w.Code != 200 {
		t.Errorf("metadata without a token: %d", w.Code)
	}
}
