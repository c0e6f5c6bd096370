package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// replicaSet is two gateway processes on one PostgreSQL schema and one Redis
// prefix, both configured with A's URL as the public base URL (as behind a
// load balancer), plus what the tests registered in the shared registry.
type replicaSet struct {
	a, b    *proc
	vars    map[string]string // the shared configuration (env)
	env     *smartEnv         // base, issuer, fhirBase = the public URL
	backend string            // backend client id
	keyFile string            // its private key
	patient string            // the Patient id of the ingested patient record
}

const (
	replicaRedirect = "http://127.0.0.1:1/replica-callback" // never dialled: the test reads the Location
	replicaScopes   = "launch/patient openid fhirUser offline_access patient/*.rs"
)

// startReplicas registers the clients and a patient login through the CLI
// (the registry lives in PostgreSQL), starts replica A, then replica B, and
// ingests an organization and a patient through A.
func startReplicas(t *testing.T, extraEnv ...string) *replicaSet {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	return startReplicasOn(t, storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL"), storetest.ServiceURL(t, "KETABRIDGE_TEST_REDIS_URL"), extraEnv...)
}

// startReplicasOn is startReplicas on the given servers, in a fresh schema
// and key prefix.
func startReplicasOn(t *testing.T, dbURL, redisURL string, extraEnv ...string) *replicaSet {
	t.Helper()
	dbURL, prefix := testSchema(t, dbURL), testPrefix(t, redisURL)
	portA, portB := smartFreePort(t), smartFreePort(t)
	public := "http://127.0.0.1:" + portA
	// The replicas share one key-encryption key file: the signing keys in
	// the database are sealed with it.
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	kekFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(kekFile, []byte(base64.StdEncoding.EncodeToString(kek)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{
		vars: map[string]string{
			"KETABRIDGE_DATABASE_URL": dbURL, "KETABRIDGE_REDIS_URL": redisURL, "KETABRIDGE_REDIS_PREFIX": prefix,
			"KETABRIDGE_BASE_URL": public, "KETABRIDGE_DATA_DIR": t.TempDir(),
			"KETABRIDGE_KEY_ENCRYPTION_KEY_FILE": kekFile,
		},
		env:     &smartEnv{base: public, fhirBase: public + "/fhir", issuer: public + "/auth"},
		backend: "replica-backend",
		patient: mapping.ResourceID(clinic.KindPatient, "pat-000001"),
	}
	var jwksFile string
	rs.keyFile, jwksFile = backendKeyFiles(t, "replica")
	cliEnv(t, rs.vars, "clients", "add", "--id", rs.backend, "--kind", "backend", "--jwks-file", jwksFile,
		"--scope", "system/*.rs system/ClinicRecord.write")
	cliEnv(t, rs.vars, "clients", "add", "--id", "replica-app", "--kind", "public", "--name", "Replica app",
		"--redirect-uri", replicaRedirect, "--scope", replicaScopes)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(smartPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cliEnv(t, rs.vars, "users", "add", "--id", "replica-patient", "--role", "patient",
		"--fhir-user", "Patient/"+rs.patient, "--name", "Replica Patient", "--password-file", pw)

	envList := func(dataDir string) []string {
		out := append([]string{}, extraEnv...)
		for k, v := range rs.vars {
			if k == "KETABRIDGE_DATA_DIR" {
				v = dataDir
			}
			out = append(out, k+"="+v)
		}
		return out
	}
	rs.a = startProc(t, "A", "127.0.0.1:"+portA, envList(t.TempDir()))
	rs.b = startProc(t, "B", "127.0.0.1:"+portB, envList(t.TempDir()))

	if r := rs.ingest(t, rs.a, "Young"); r.status != http.StatusOK {
		t.Fatalf("ingest at A: %s", r)
	}
	return rs
}

// patientRecords is the organization and the patient record, with the
// patient's family name set to family (a re-ingest changes it).
func patientRecords(t *testing.T, family string) []byte {
	t.Helper()
	raw, err := server.SynthRecords(1, 1, server.DemoStart)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range raw {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m["kind"] == "organization" && m["id"] == "org-lakeside":
			out = append(out, string(r))
		case m["kind"] == "patient" && m["id"] == "pat-000001":
			m["name"].(map[string]any)["family"] = family
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
	}
	if len(out) != 2 {
		t.Fatalf("synth gave %d of the 2 records", len(out))
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// backendToken gets a client_credentials token from p with a fresh
// assertion.
func (rs *replicaSet) backendToken(t *testing.T, p *proc, scope string) string {
	t.Helper()
	r := p.form(t, "/auth/token", rs.assertionForm(t, rs.signAssertion(t), scope))
	if r.status != http.StatusOK {
		t.Fatalf("client_credentials at %s: %s\n%s", p.name, r, p.logs)
	}
	return r.json(t)["access_token"].(string)
}

// signAssertion signs a private_key_jwt client assertion for the backend
// (aud = the public token endpoint, one fresh jti).
func (rs *replicaSet) signAssertion(t *testing.T) string {
	t.Helper()
	pemBytes, err := os.ReadFile(rs.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := auth.ParseBackendKey(rs.backend, pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bk.Assertion(rs.env.issuer + "/token")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (rs *replicaSet) assertionForm(_ *testing.T, assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion}}
}

// ingest posts the patient records to p's ingest API.
func (rs *replicaSet) ingest(t *testing.T, p *proc, family string) smartResp {
	t.Helper()
	tok := rs.backendToken(t, p, "system/ClinicRecord.write")
	return p.do(t, http.MethodPost, "/internal/v1/records", tok, "application/x-ndjson", patientRecords(t, family))
}

// readPatient reads the patient at p and returns its family name and
// version.
func (rs *replicaSet) readPatient(t *testing.T, p *proc, token string) (family, version string) {
	t.Helper()
	r := p.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient, token, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("read at %s: %s", p.name, r)
	}
	var pat struct {
		Meta struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
		Name []struct {
			Family string `json:"family"`
		} `json:"name"`
	}
	if err := json.Unmarshal(r.body, &pat); err != nil || len(pat.Name) == 0 {
		t.Fatalf("patient body: %v %s", err, r.body)
	}
	return pat.Name[0].Family, pat.Meta.VersionID
}

// patientLogin runs the standalone launch at A as the patient and returns
// the code (not redeemed) and the app that asked for it.
func (rs *replicaSet) patientCode(t *testing.T) (*smartApp, string) {
	t.Helper()
	app := rs.env.app("replica-app", replicaRedirect, strings.Fields(replicaScopes)...)
	b := rs.env.newBrowser(t)
	redirect := b.authorize(t, app.authURL(rs.env), "replica-patient", approveAll)
	return app, app.code(t, redirect)
}

// redeem redeems a code at p (PKCE verifier of app).
func (rs *replicaSet) redeem(t *testing.T, p *proc, app *smartApp, code string) smartResp {
	t.Helper()
	return p.form(t, "/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {replicaRedirect}, "client_id": {"replica-app"}, "code_verifier": {app.verifier}})
}

func TestReplicasActAsOneGateway(t *testing.T) {
	rs := startReplicas(t)
	a, b := rs.a, rs.b

	t.Run("code issued by A is redeemed at B, once", func(t *testing.T) {
		app, code := rs.patientCode(t) // the browser talks to A (the public URL)
		r := rs.redeem(t, b, app, code)
		if r.status != http.StatusOK {
			t.Fatalf("redeem at B: %s", r)
		}
		tok := r.json(t)
		if tok["patient"] != rs.patient {
			t.Errorf("launch context patient %v, want %s", tok["patient"], rs.patient)
		}
		// The token B issued works at A and at B.
		for _, p := range []*proc{a, b} {
			if fam, _ := rs.readPatient(t, p, tok["access_token"].(string)); fam == "" {
				t.Errorf("read at %s with B's token failed", p.name)
			}
		}
		again := rs.redeem(t, a, app, code)
		wantOAuthError(t, again, []int{http.StatusBadRequest}, "invalid_grant")
		// Reuse revoked what the code issued (RFC 6749 §4.1.2), everywhere.
		if r := b.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient, tok["access_token"].(string), "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("after code reuse at A, B still honours the code's token: %s", r)
		}
	})

	t.Run("client assertion replayed at the other replica is refused", func(t *testing.T) {
		assertion := rs.signAssertion(t)
		if r := a.form(t, "/auth/token", rs.assertionForm(t, assertion, "system/*.rs")); r.status != http.StatusOK {
			t.Fatalf("first use at A: %s", r)
		}
		r := b.form(t, "/auth/token", rs.assertionForm(t, assertion, "system/*.rs"))
		wantOAuthError(t, r, []int{http.StatusBadRequest, http.StatusUnauthorized}, "invalid_client")
	})

	t.Run("a record re-ingested through A is read fresh through B", func(t *testing.T) {
		tok := rs.backendToken(t, b, "system/*.rs")
		fam, v1 := rs.readPatient(t, b, tok)
		if fam2, _ := rs.readPatient(t, b, tok); fam != "Young" || fam2 != "Young" { // the second read may be a cache hit
			t.Fatalf("before: family %q/%q", fam, fam2)
		}
		// The second read was served from the shared cache: what follows
		// tests invalidation, not a cache that is never used.
		if hits := metricValue(t, b, `ketabridge_cache_requests_total{op="read",result="hit"}`); hits < 1 {
			t.Fatalf("B's cache has %v read hits after a repeated read", hits)
		}
		searchBefore := b.do(t, http.MethodGet, "/fhir/Patient?family=Youngblood", tok, "", nil)
		if searchBefore.status != http.StatusOK || strings.Contains(string(searchBefore.body), rs.patient) {
			t.Fatalf("search before: %s", searchBefore)
		}
		for i := 0; i < 3; i++ {
			r := rs.ingest(t, a, "Youngblood")
			if r.status != http.StatusOK {
				t.Fatalf("re-ingest at A: %s", r)
			}
			// No sleep: the ingest was acknowledged, B must not be stale.
			fam, v2 := rs.readPatient(t, b, tok)
			want := "Youngblood"
			if i == 1 {
				want = "Young"
			}
			if i == 1 {
				// Change it back and forth: each acknowledged write shows.
				if r := rs.ingest(t, a, "Young"); r.status != http.StatusOK {
					t.Fatalf("re-ingest at A: %s", r)
				}
				fam, v2 = rs.readPatient(t, b, tok)
			}
			if fam != want || v2 == v1 {
				t.Fatalf("round %d: B read family %q version %s after A acknowledged %q (was version %s)", i, fam, v2, want, v1)
			}
			v1 = v2
		}
		search := b.do(t, http.MethodGet, "/fhir/Patient?family=Youngblood", tok, "", nil)
		if hits := metricValue(t, b, `ketabridge_cache_requests_total{op="search",result="miss"}`); hits < 2 {
			t.Errorf("B's searches did not go through the cache (%v misses)", hits)
		}
		if search.status != http.StatusOK || !strings.Contains(string(search.body), rs.patient) {
			t.Fatalf("search at B after the re-ingest does not find the patient: %s", search)
		}
	})

	t.Run("a token revoked at A is refused at B", func(t *testing.T) {
		app, code := rs.patientCode(t)
		r := rs.redeem(t, a, app, code)
		if r.status != http.StatusOK {
			t.Fatalf("redeem at A: %s", r)
		}
		access := r.json(t)["access_token"].(string)
		if fam, _ := rs.readPatient(t, b, access); fam == "" {
			t.Fatal("no read before revocation")
		}
		rev := a.form(t, "/auth/revoke", url.Values{"token": {access}, "client_id": {"replica-app"}})
		if rev.status != http.StatusOK {
			t.Fatalf("revoke at A: %s", rev)
		}
		// Immediately, well within the 5 s local refresh.
		got := b.do(t, http.MethodGet, "/fhir/Patient/"+rs.patient, access, "", nil)
		if got.status != http.StatusUnauthorized || !strings.Contains(got.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("B after revocation at A: %d %s (WWW-Authenticate %q)", got.status, got.body, got.header.Get("WWW-Authenticate"))
		}
	})
}

// metricValue reads one sample from p's /metrics (0 when absent).
func metricValue(t *testing.T, p *proc, series string) float64 {
	t.Helper()
	r := p.do(t, http.MethodGet, "/metrics", "", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics at %s: %d", p.name, r.status)
	}
	for _, l := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", series, v)
			}
			return f
		}
	}
	return 0
}
