package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/auth"
)

func jwksOf(t *testing.T, keys ...jose.JSONWebKey) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClientsCommand(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	data := tmp + "/data"

	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := writeFile(t, tmp, "good.jwks.json", jwksOf(t,
		jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec-1", Algorithm: "ES384", Use: "sig"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa-1", Algorithm: "RS384", Use: "sig"}))
	private := writeFile(t, tmp, "private.jwks.json", jwksOf(t, jose.JSONWebKey{Key: ec, KeyID: "ec-1", Algorithm: "ES384"}))
	noKid := writeFile(t, tmp, "nokid.jwks.json", jwksOf(t, jose.JSONWebKey{Key: &ec.PublicKey, Algorithm: "ES384"}))
	weakFile := writeFile(t, tmp, "weak.jwks.json", jwksOf(t, jose.JSONWebKey{Key: &weak.PublicKey, KeyID: "w", Algorithm: "RS384"}))
	symJWK := writeFile(t, tmp, "sym.jwks.json", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}]}`)
	empty := writeFile(t, tmp, "empty.jwks.json", `{"keys":[]}`)
	garbage := writeFile(t, tmp, "garbage.jwks.json", `{"keys":[{"kty":"RSA"`)
	const givenSecret = "a-very-long-client-secret-of-40-characters"
	secretFile := writeFile(t, tmp, "secret", givenSecret+"\n")
	shortSecret := writeFile(t, tmp, "short", "tooshort")

	public := func(extra ...string) []string {
		return append([]string{"clients", "add", "--id", "pub", "--kind", "public",
			"--redirect-uri", "https://app.example/cb", "--scope", "launch openid fhirUser patient/*.rs"}, extra...)
	}
	backend := func(extra ...string) []string {
		return append([]string{"clients", "add", "--id", "ehr-x", "--kind", "backend", "--scope", "system/*.rs"}, extra...)
	}
	steps := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"backend with jwks file", []string{"clients", "add", "--id", "ehr-1", "--kind", "backend",
			"--jwks-file", good, "--scope", "system/*.rs"}, 0, "client ehr-1 (backend) saved"},
		{"public with two redirects and origin", []string{"clients", "add", "--id", "app-1", "--kind", "public",
			"--name", "Dose Tracker", "--redirect-uri", "https://app.example/cb", "--redirect-uri", "http://127.0.0.1:9000/cb",
			"--launch-url", "https://app.example/launch", "--origin", "https://app.example",
			"--scope", "launch openid fhirUser offline_access patient/*.rs user/Observation.cruds"}, 0, "client app-1 (public) saved"},
		{"symmetric generated secret", []string{"clients", "add", "--id", "sym-1", "--kind", "symmetric",
			"--redirect-uri", "http://localhost:8081/cb", "--scope", "launch patient/*.read"}, 0, "client_secret: "},
		{"symmetric secret from file", []string{"clients", "add", "--id", "sym-2", "--kind", "symmetric",
			"--redirect-uri", "https://s.example/cb", "--scope", "launch", "--secret-file", secretFile}, 0, "client sym-2"},
		{"asymmetric with jwks url", []string{"clients", "add", "--id", "asym-1", "--kind", "asymmetric",
			"--redirect-uri", "https://a.example/cb", "--scope", "launch/patient patient/Patient.rs", "--jwks-url", "https://a.example/jwks"}, 0, "client asym-1"},
		{"duplicate refused", backend("--id", "ehr-1", "--jwks-file", good), 1, "exists"},
		{"replace", []string{"clients", "add", "--id", "ehr-1", "--kind", "backend",
			"--jwks-file", good, "--scope", "system/Patient.rs system/Observation.rs", "--replace"}, 0, "saved"},
		{"short secret", []string{"clients", "add", "--id", "s", "--kind", "symmetric",
			"--redirect-uri", "https://s.example/cb", "--scope", "launch", "--secret-file", shortSecret}, 2, "at least 32"},
		{"secret for public", public("--secret-file", secretFile), 2, "symmetric clients only"},
		{"bad kind", []string{"clients", "add", "--id", "x", "--kind", "confidential", "--scope", "launch"}, 2, "--kind"},
		{"missing redirect", []string{"clients", "add", "--id", "x", "--kind", "public", "--scope", "launch"}, 2, "--redirect-uri is required"},
		{"http redirect", public("--redirect-uri", "http://app.example/cb"), 2, "https"},
		{"relative redirect", public("--redirect-uri", "/cb"), 2, "absolute"},
		{"redirect with fragment", public("--redirect-uri", "https://app.example/cb#x"), 2, "fragment"},
		{"redirect with credentials", public("--redirect-uri", "https://u:p@app.example/cb"), 2, "credentials"},
		{"custom scheme", public("--redirect-uri", "myapp:/cb"), 2, "absolute"},
		{"origin with path", public("--origin", "https://app.example/x"), 2, "origin"},
		{"http launch url", public("--launch-url", "http://app.example/launch"), 2, "--launch-url"},
		{"v2 scope out of order", public("--scope", "patient/*.dus"), 2, "cruds"},
		{"unknown scope", public("--scope", "launch admin"), 2, "unknown scope"},
		{"system scope for app", public("--scope", "system/*.rs"), 2, "backend clients"},
		{"no scope", public("--scope", ""), 2, "--scope is required"},
		{"jwks for public", public("--jwks-file", good), 2, "asymmetric and backend clients only"},
		{"backend without keys", backend(), 2, "--jwks-file or a JWK Set URL is required"},
		{"backend patient scope", backend("--jwks-file", good, "--scope", "patient/*.rs"), 2, "system/ scopes only"},
		{"backend launch scope", backend("--jwks-file", good, "--scope", "launch system/*.rs"), 2, "system/ resource scopes only"},
		{"backend with redirect", backend("--jwks-file", good, "--redirect-uri", "https://e.example/cb"), 2, "a backend client has neither"},
		{"private jwk", backend("--jwks-file", private), 2, "private key"},
		{"jwk without kid", backend("--jwks-file", noKid), 2, "no kid"},
		{"weak rsa", backend("--jwks-file", weakFile), 2, "2048"},
		{"symmetric jwk", backend("--jwks-file", symJWK), 2, "--jwks-file"},
		{"empty jwks", backend("--jwks-file", empty), 2, "no keys"},
		{"garbage jwks", backend("--jwks-file", garbage), 2, "not a JWK Set"},
		{"missing jwks file", backend("--jwks-file", tmp+"/nope"), 1, "cannot read --jwks-file"},
		{"http jwks url", backend("--jwks-url", "http://e.example/jwks"), 2, "--jwks-url"},
		{"list", []string{"clients", "list"}, 0, "ehr-1"},
		{"remove", []string{"clients", "remove", "--id", "asym-1"}, 0, "client asym-1 removed"},
		{"remove again", []string{"clients", "remove", "--id", "asym-1"}, 1, "no client asym-1"},
	}
	var generated string
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := runCLI(t, data, "", st.args...)
			if r.code != st.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", r.code, st.code, r.stdout, r.stderr)
			}
			got := r.stderr
			if st.code == 0 {
				got = r.stdout
			}
			if !strings.Contains(got, st.out) {
				t.Errorf("output %q does not contain %q", got, st.out)
			}
			if strings.Contains(r.stdout+r.stderr, givenSecret) || strings.Contains(r.stdout+r.stderr, "$argon2id$") {
				t.Errorf("output shows a secret or its hash: %s", r.stdout+r.stderr)
			}
			if m := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(r.stdout); m != nil {
				generated = m[1]
			}
		})
	}

	st := openData(t, data)
	t.Run("stored clients", func(t *testing.T) {
		l, err := st.ListClients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range l {
			ids = append(ids, c.ID)
		}
		if got := strings.Join(ids, " "); got != "app-1 ehr-1 sym-1 sym-2" {
			t.Errorf("clients = %s", got)
		}
		c, err := st.GetClient(ctx, "app-1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != "Dose Tracker" || len(c.RedirectURIs) != 2 || c.Origins[0] != "https://app.example" ||
			c.LaunchURL != "https://app.example/launch" || len(c.Scopes) != 6 || c.SecretHash != "" || c.JWKS != nil {
			t.Errorf("app-1 = %+v", c)
		}
		c, err = st.GetClient(ctx, "ehr-1")
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil || len(set.Keys) != 2 {
			t.Errorf("ehr-1 JWKS not stored: %v %s", err, c.JWKS)
		}
		if strings.Join(c.Scopes, " ") != "system/Patient.rs system/Observation.rs" {
			t.Errorf("ehr-1 scopes after --replace = %v", c.Scopes)
		}
		c, err = st.GetClient(ctx, "sym-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(generated) < 40 || !auth.CheckPassword(c.SecretHash, generated) {
			t.Errorf("the printed secret (%d chars) does not verify against sym-1's hash", len(generated))
		}
		c, err = st.GetClient(ctx, "sym-2")
		if err != nil {
			t.Fatal(err)
		}
		if !auth.CheckPassword(c.SecretHash, givenSecret) {
			t.Error("sym-2's secret from --secret-file does not verify")
		}
	})
}
