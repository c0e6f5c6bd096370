package auth

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// FuzzParseScope: docs/design/security.md NEG-9. Seeds are the scopes real
// clients ask for (testdata/fuzz/FuzzParseScope). Properties: a scope that
// parses is written back (Scope.String) as a scope that parses to the same
// permission, never wider or narrower; a grant never holds more resource
// scopes than it was given.
func FuzzParseScope(f *testing.F) {
	f.Add("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			if _, ok := err.(*ScopeError); !ok {
				t.Fatalf("error %T, want *ScopeError", err)
			}
			return
		}
		if sc.Perms == 0 && !sc.V1 && !strings.HasSuffix(s, ".") {
			// An empty permission set parses only from no letters at all,
			// which ParseScope refuses.
			t.Fatalf("%q: no permissions", s)
		}
		back := sc.String()
		again, err := ParseScope(back)
		if err != nil {
			t.Fatalf("%q parses, its String %q does not: %v", s, back, err)
		}
		sc.V1 = false // String writes SMART v2
		if !reflect.DeepEqual(again, sc) {
			t.Fatalf("%q -> %q parses to %+v, want %+v", s, back, again, sc)
		}
		g, _ := ParseGrant(s + " " + back)
		if len(g.Resource) != 2 {
			t.Fatalf("grant of %q and %q: %d resource scopes", s, back, len(g.Resource))
		}
	})
}

// TestScopeConstraintsWriteBack: the fuzz target's findings. Constraints
// that parsed into a Filter whose String is another scope are refused:
// escapes ("a%26b" became two constraints when written back), "+", ";",
// "," (FHIR's OR, not implemented) and an empty system ("|code", which
// means "no system" and was kept as "any system", a wider grant).
func TestScopeConstraintsWriteBack(t *testing.T) {
	for _, s := range []string{
		"patient/Observation.rs?category=a%26b",
		"patient/Observation.rs?category=%7Cvital-signs",
		"patient/Observation.rs?category=vital+signs",
		"patient/Observation.rs?category=|vital-signs",
		"patient/Observation.rs?category=a;b=c",
		"patient/Observation.rs?category=a,b",
		"patient/Observation.rs?category=a&&status=final",
		"patient/Observation.rs?category=a=b",
		"patient/Observation.rs?cat%65gory=a",
	} {
		if sc, err := ParseScope(s); err == nil {
			t.Errorf("%q accepted as %q", s, sc.String())
		}
	}
	for _, s := range []string{
		"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
		"patient/Observation.rs?status=final&category=survey",
	} {
		sc, err := ParseScope(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if again, err := ParseScope(sc.String()); err != nil || !reflect.DeepEqual(again, sc) {
			t.Errorf("%q -> %q -> %+v, %v", s, sc.String(), again, err)
		}
	}
}

// FuzzClientAssertion drives the private_key_jwt path of the token endpoint
// (client_credentials with a client assertion; docs/design/security.md
// CLI-2, CLI-8, NEG-23 to NEG-31). mode picks what raw is:
//   - 0: the whole client_assertion;
//   - 1: text inserted into a freshly signed, valid assertion of client
//     "bk" at position at (modulo its length);
//   - 2: the claims JSON of an assertion signed with bk's key, with AUD and
//     EXP replaced by the token endpoint and a valid expiry.
//
// Properties: the answer is 200, 400 or 401, never a 5xx; a 200 is only for
// a canonical compact JWS; nothing inserted into a signed assertion keeps it
// valid (one spelling per assertion).
func FuzzClientAssertion(f *testing.F) {
	f.Add("", uint8(1), uint16(0))
	env := newTDEnv(f)
	f.Fuzz(func(t *testing.T, raw string, mode uint8, at uint16) {
		if len(raw) > 4096 {
			return
		}
		env.t = t // inputs run one at a time in each fuzzing process
		assertion := raw
		switch mode % 3 {
		case 1:
			valid := env.assertion(env.rs, "bk", nil)
			i := int(at) % (len(valid) + 1)
			assertion = valid[:i] + raw + valid[i:]
		case 2:
			claims := strings.NewReplacer("AUD", env.s.opts.TokenEndpoint(),
				"EXP", strconv.FormatInt(env.clock.Now().Add(4*time.Minute).Unix(), 10),
				"JTI", uuid.NewString()).Replace(raw)
			head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS384","kid":"rs1","typ":"JWT"}`))
			signing := head + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
			sig, err := jwt.SigningMethodRS384.Sign(signing, env.rs.priv)
			if err != nil {
				t.Fatal(err)
			}
			assertion = signing + "." + base64.RawURLEncoding.EncodeToString(sig)
		}
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_assertion_type": {JWTBearerAssertionType}, "client_assertion": {assertion}}
		resp, err := http.PostForm(env.srv.URL+"/auth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			if err := checkCompactJWS(assertion); err != nil {
				t.Fatalf("a non-canonical assertion was accepted: %q", assertion)
			}
			if mode%3 == 1 && raw != "" {
				t.Fatalf("%q inserted at %d into a signed assertion: still accepted", raw, at)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

// TestJWSOneSpelling: docs/design/security.md CLI-8, the client assertion
// fuzz target's finding. encoding/base64 skips CR and LF, so a signature
// segment with a line break inserted still verified: an assertion (or an
// access token) had more than one spelling. Both are refused now.
func TestJWSOneSpelling(t *testing.T) {
	env := newTKEnv(t)
	tok, _, err := env.tok.Access(tkReq)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.tok.Verify(context.Background(), tok); err != nil {
		t.Fatalf("the token itself: %v", err)
	}
	sig := strings.LastIndexByte(tok, '.') + 10
	for _, bad := range []string{
		tok[:sig] + "\n" + tok[sig:],
		tok[:sig] + "\r\n" + tok[sig:],
		tok + "=",
		tok + ".",
		strings.Replace(tok, ".", "..", 1),
		tok[:sig] + "+" + tok[sig+1:],
	} {
		if checkCompactJWS(bad) == nil {
			t.Errorf("checkCompactJWS accepted %q", bad)
		}
		if _, err := env.tok.Verify(context.Background(), bad); err == nil {
			t.Errorf("Verify accepted a respelled token")
		}
	}
	// The last character of a 2-byte final group carries 2 unused bits:
	// "AQ" is canonical for 0x01, "AR" is not.
	if checkCompactJWS("e30.AQ.AQ") != nil || checkCompactJWS("e30.AQ.AR") == nil {
		t.Error("trailing bits are not checked")
	}
}
