package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// edgeGateway serves an empty gateway on a loopback listener and returns its
// base URL and a system/*.rs access token from its own token endpoint.
func edgeGateway(t *testing.T) (base, token string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base = "http://" + ln.Addr().String()
	cfg, err := parse([]string{"--data-dir", t.TempDir(), "--base-url", base,
		"--clinic-organization", synth.OrgClinic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
		_ = g.Close()
	})
	bk, err := auth.NewBackendKey("edge-test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := bk.Client("edge", "system/*.rs", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.RegisterClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	token, err = bk.AccessToken(ctx, http.DefaultClient, cfg.TokenEndpoint(), cfg.TokenEndpoint(), "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	return base, token
}

type edgeAnswer struct {
	status int
	header http.Header
	body   []byte
}

// edgeDo sends one request; hdr holds header name/value pairs.
func edgeDo(t *testing.T, method, url, token, body string, hdr ...string) edgeAnswer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return edgeAnswer{resp.StatusCode, resp.Header, b}
}

// isOutcome fails unless a is an OperationOutcome with status and issue code.
func isOutcome(t *testing.T, what string, a edgeAnswer, status int, code string) {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	ct := a.header.Get("Content-Type")
	if a.status != status || !strings.HasPrefix(ct, "application/fhir+json") ||
		json.Unmarshal(a.body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != code {
		t.Errorf("%s: %d %s %.200s; want %d OperationOutcome %s", what, a.status, ct, a.body, status, code)
	}
}

// isOAuthError fails unless a is OAuth error JSON with status and error.
func isOAuthError(t *testing.T, what string, a edgeAnswer, status int, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	ct := a.header.Get("Content-Type")
	if a.status != status || !strings.HasPrefix(ct, "application/json") || json.Unmarshal(a.body, &e) != nil ||
		e.Error != code || a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %d %s %.200s; want %d OAuth %s", what, a.status, ct, a.body, status, code)
	}
}

// TestEdgeLimits: docs/design/security.md LIM-1. The request head's limits
// are answered by the gateway in the family of the path, on the real
// server: a 1.1 MB query was a plain-text 431 from net/http.
func TestEdgeLimits(t *testing.T) {
	base, tok := edgeGateway(t)
	huge := "name=" + strings.Repeat("a", 1100*1000)
	long := "name=" + strings.Repeat("a", 33<<10)
	for _, tc := range []struct{ what, url, token string }{
		{"1.1 MB query, no token", base + "/fhir/Patient?" + huge, ""},
		{"1.1 MB query", base + "/fhir/Patient?" + huge, tok},
		{"33 KiB query", base + "/fhir/Patient?" + long, tok},
		{"37 KiB path", base + "/fhir/Patient/" + strings.Repeat("a", 37<<10), tok},
		{"metadata, 33 KiB query", base + "/fhir/metadata?" + long, ""},
		{"unknown path, 1.1 MB query", base + "/nothing?" + huge, ""},
	} {
		isOutcome(t, tc.what, edgeDo(t, "GET", tc.url, tc.token, ""), 414, "too-long")
	}
	isOAuthError(t, "token endpoint, 1.1 MB query", edgeDo(t, "POST", base+"/auth/token?"+huge, "", "grant_type=x",
		"Content-Type", "application/x-www-form-urlencoded"), 414, "invalid_request")

	big := strings.Repeat("b", 17<<10)
	isOutcome(t, "17 KiB header", edgeDo(t, "GET", base+"/fhir/Patient", tok, "", "X-Big", big), 431, "too-long")
	hdr := []string{}
	for _, n := range []string{"X-A", "X-B", "X-C", "X-D", "X-E"} {
		hdr = append(hdr, n, strings.Repeat("c", 15<<10))
	}
	isOutcome(t, "75 KiB of headers", edgeDo(t, "GET", base+"/fhir/Patient", tok, "", hdr...), 431, "too-long")
	isOAuthError(t, "token endpoint, 17 KiB header", edgeDo(t, "POST", base+"/auth/token", "", "grant_type=x",
		"Content-Type", "application/x-www-form-urlencoded", "X-Big", big), 431, "invalid_request")
	if a := edgeDo(t, "GET", base+"/fhir/Patient", tok, "", "X-Ok", strings.Repeat("d", 8<<10)); a.status != 200 {
		t.Errorf("an 8 KiB header: %d %.200s", a.status, a.body)
	}
	// Past http.Server.MaxHeaderBytes net/http answers before any handler:
	// the documented last resort.
	if a := edgeDo(t, "GET", base+"/fhir/Patient?name="+strings.Repeat("e", 3<<20), tok, ""); a.status != 431 {
		t.Errorf("3 MiB query: %d, want net/http's 431", a.status)
	}
}

// TestEdgeErrorsByFamily: docs/design/security.md LIM-3, PRIV-9. Every
// error is an OperationOutcome outside /auth and OAuth error JSON under it,
// whatever the path or method; Echo's {"message":"Not Found"} is never
// answered. HEAD is served wherever GET is.
func TestEdgeErrorsByFamily(t *testing.T) {
	base, tok := edgeGateway(t)
	isOutcome(t, "//fhir//Patient, no token", edgeDo(t, "GET", base+"//fhir//Patient", "", ""), 401, "login")
	isOutcome(t, "//fhir//Patient", edgeDo(t, "GET", base+"//fhir//Patient", tok, ""), 404, "not-found")
	isOutcome(t, "TRACE /", edgeDo(t, "TRACE", base+"/", "", ""), 404, "not-found")
	isOutcome(t, "TRACE /fhir/Patient, no token", edgeDo(t, "TRACE", base+"/fhir/Patient", "", ""), 401, "login")
	isOutcome(t, "TRACE /fhir/Patient", edgeDo(t, "TRACE", base+"/fhir/Patient", tok, ""), 405, "not-supported")
	isOutcome(t, "GET /nothing", edgeDo(t, "GET", base+"/nothing", "", ""), 404, "not-found")
	isOutcome(t, "DELETE /healthz", edgeDo(t, "DELETE", base+"/healthz", "", ""), 405, "not-supported")
	isOutcome(t, "GET /internal/v1/nothing", edgeDo(t, "GET", base+"/internal/v1/nothing", "", ""), 401, "login")
	isOutcome(t, "///fhir/Patient", edgeDo(t, "GET", base+"///fhir/Patient", tok, ""), 404, "not-found")
	isOutcome(t, "//nothing", edgeDo(t, "GET", base+"//nothing", tok, ""), 404, "not-found")
	isOAuthError(t, "GET /auth/nothing", edgeDo(t, "GET", base+"/auth/nothing", "", ""), 404, "invalid_request")
	isOAuthError(t, "TRACE /auth/token", edgeDo(t, "TRACE", base+"/auth/token", "", ""), 405, "invalid_request")

	for _, path := range []string{"/fhir/metadata", "/fhir/Patient", "/fhir/Patient?_count=1",
		"/fhir/.well-known/smart-configuration"} {
		get := edgeDo(t, "GET", base+path, tok, "")
		head := edgeDo(t, "HEAD", base+path, tok, "")
		if get.status != 200 || head.status != 200 || len(head.body) != 0 ||
			head.header.Get("Content-Type") != get.header.Get("Content-Type") {
			t.Errorf("HEAD %s: %d %q %d bytes; GET %d %q", path, head.status, head.header.Get("Content-Type"),
				len(head.body), get.status, get.header.Get("Content-Type"))
		}
	}
	head := edgeDo(t, "HEAD", base+"/fhir/Patient/nobody", tok, "")
	if head.status != 404 || len(head.body) != 0 {
		t.Errorf("HEAD of a missing Patient: %d, %d bytes", head.status, len(head.body))
	}
}

// TestEdgeAuthenticationFirst: docs/design/security.md LIM-4, RS-1. Without
// a token nothing about the request is parsed or judged: 401 whatever is
// wrong with it.
func TestEdgeAuthenticationFirst(t *testing.T) {
	base, tok := edgeGateway(t)
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	many := "patient=p1" + strings.Repeat("&x", 10001)
	for _, tc := range []struct {
		what, method, path, body string
		hdr                      []string
		withToken                int
	}{
		{"unknown parameter", "GET", "/fhir/Observation?bogus=1", "", nil, 400},
		{"unknown parameter, lenient", "GET", "/fhir/Observation?bogus=1&_count=x", "", []string{"Prefer", "handling=lenient"}, 400},
		{"over 10,000 parameters", "GET", "/fhir/Observation?" + many, "", nil, 400},
		{"bad escape", "GET", "/fhir/Observation?patient=%ZZ", "", nil, 400},
		{"POST _search, unknown parameter", "POST", "/fhir/Observation/_search", "bogus=1", form, 400},
		{"POST _search, bad body", "POST", "/fhir/Observation/_search", "a=%ZZ", form, 400},
		{"POST _search, JSON", "POST", "/fhir/Observation/_search", "{}", []string{"Content-Type", "application/json"}, 415},
		{"$everything, bad _since", "GET", "/fhir/Patient/p1/$everything?_since=yesterday", "", nil, 400},
		{"unknown type", "GET", "/fhir/Spaceship?x=1", "", nil, 404},
		{"XML", "GET", "/fhir/Patient?_format=xml", "", nil, 406},
	} {
		isOutcome(t, tc.what+", no token", edgeDo(t, tc.method, base+tc.path, "", tc.body, tc.hdr...), 401, "login")
		isOutcome(t, tc.what+", bad token", edgeDo(t, tc.method, base+tc.path, "not-a-token", tc.body, tc.hdr...), 401, "login")
		if a := edgeDo(t, tc.method, base+tc.path, tok, tc.body, tc.hdr...); a.status != tc.withToken {
			t.Errorf("%s: %d with a token, want %d: %.200s", tc.what, a.status, tc.withToken, a.body)
		}
	}
}
