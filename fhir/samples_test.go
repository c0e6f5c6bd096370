package fhir

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// greedyLimiter throttles client "greedy" and serves the others.
type greedyLimiter struct{}

func (greedyLimiter) Take(_ context.Context, key string, _ float64, _ int) (bool, time.Duration, error) {
	return key != clientKey("greedy"), 2 * time.Second, nil
}

// TestErrorOutcomes: every error the API answers goes through the one
// renderer and is a valid OperationOutcome (conformance.Validate) with the
// status and IssueType of the kind table, Cache-Control: no-store, and the
// header its status calls for (docs/design/security.md PRIV-7, PRIV-9). With
// FHIR_SAMPLES set, each body is also written for the independent validator.
func TestErrorOutcomes(t *testing.T) {
	greedy := caller("system/*.rs", "")
	greedy.ClientID = "greedy"
	callers := testCallers{defaultToken: caller("system/*.cruds", ""), "patient": caller("patient/*.rs", "p1"), "greedy": greedy}
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	tests := []struct {
		name, method, target, body, token string
		hdr                               []string
		storeFails                        error
		status                            int
		code, header, headerValue         string
	}{
		{name: "400 unknown parameter", target: "/fhir/Patient?shoe-size=1", status: 400, code: "invalid"},
		{name: "401 no token", target: "/fhir/Patient/p1", token: "-", status: 401, code: "login",
			header: "WWW-Authenticate", headerValue: `Bearer realm="KetaBridge"`},
		{name: "401 invalid token", target: "/fhir/Patient/p1", token: "forged", status: 401, code: "login",
			header: "WWW-Authenticate", headerValue: `Bearer realm="KetaBridge", error="invalid_token"`},
		{name: "403 another patient", target: "/fhir/Patient/p2", token: "patient", status: 403, code: "forbidden",
			header: "WWW-Authenticate", headerValue: `Bearer realm="KetaBridge", error="insufficient_scope"`},
		{name: "404 unknown id", target: "/fhir/Patient/nope", status: 404, code: "not-found"},
		{name: "405 write", method: "DELETE", target: "/fhir/Patient/p1", status: 405, code: "not-supported",
			header: "Allow", headerValue: "GET, HEAD"},
		{name: "406 XML", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/fhir+xml"}, status: 406, code: "not-supported"},
		{name: "410 deleted", target: "/fhir/Patient/p3", status: 410, code: "deleted"},
		{name: "413 body", method: "POST", target: "/fhir/Patient/_search", body: "name=" + strings.Repeat("x", 5000), hdr: form,
			status: 413, code: "too-costly"},
		{name: "415 content type", method: "POST", target: "/fhir/Patient/_search", body: "{}",
			hdr: []string{"Content-Type", "application/json"}, status: 415, code: "not-supported"},
		{name: "429 throttled", target: "/fhir/Patient/p1", token: "greedy", status: 429, code: "throttled",
			header: "Retry-After", headerValue: "2"},
		{name: "500 store failure", target: "/fhir/Patient/p1", storeFails: errors.New("disk: sector of Jane Doe unreadable"),
			status: 500, code: "exception"},
		{name: "503 store unavailable", target: "/fhir/Patient/p1", storeFails: fmt.Errorf("pool: %w", store.ErrUnavailable),
			status: 503, code: "transient", header: "Retry-After", headerValue: "5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnvWith(t, Options{Verifier: callers, RateLimit: &RateLimit{Limiter: greedyLimiter{}, Rate: 1, Burst: 1}})
			env.fs.fail = tc.storeFails
			method, tok := tc.method, tc.token
			if method == "" {
				method = "GET"
			}
			switch tok {
			case "":
				tok = defaultToken
			case "-":
				tok = ""
			}
			w := env.doAs(tok, method, tc.target, tc.body, tc.hdr...)
			issue := outcome(t, w, tc.status, tc.code) // status, IssueType, valid FHIR
			if get(issue, "details", "text") == nil {
				t.Errorf("issue has no details: %v", issue)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if tc.header != "" && w.Header().Get(tc.header) != tc.headerValue {
				t.Errorf("%s = %q, want %q", tc.header, w.Header().Get(tc.header), tc.headerValue)
			}
			if strings.Contains(w.Body.String(), "Jane") || strings.Contains(w.Body.String(), "pool") {
				t.Errorf("the body names the cause: %s", w.Body)
			}
			writeSample(t, "outcome-"+sampleName(tc.name)+".json", w.Body.Bytes())
		})
	}
}
