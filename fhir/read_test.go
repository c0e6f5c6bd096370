package fhir

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

func TestRead(t *testing.T) {
	env := newEnv(t, allowAll)
	cur, _ := env.fs.Read(t.Context(), "Patient", "p1")
	tests := []struct {
		name   string
		target string
		hdr    []string
		status int
		code   string // IssueType for errors
		ct     string
	}{
		{name: "current version", target: "/fhir/Patient/p1", status: 200, ct: contentFHIRJSON},
		{name: "accept fhir+json", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/fhir+json"}, status: 200, ct: contentFHIRJSON},
		{name: "accept json only", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/json"}, status: 200, ct: contentPlainJSON},
		{name: "accept both", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/json, application/fhir+json;q=0.9"}, status: 200, ct: contentFHIRJSON},
		{name: "accept wildcard", target: "/fhir/Patient/p1", hdr: []string{"Accept", "*/*"}, status: 200, ct: contentFHIRJSON},
		{name: "format json", target: "/fhir/Patient/p1?_format=json", hdr: []string{"Accept", "application/xml"}, status: 200, ct: contentFHIRJSON},
		{name: "format fhir+json", target: "/fhir/Patient/p1?_format=application/fhir%2Bjson&_pretty=true", status: 200, ct: contentFHIRJSON},
		{name: "unknown id", target: "/fhir/Patient/nope", status: 404, code: "not-found"},
		{name: "invalid id", target: "/fhir/Patient/bad_id!", status: 404, code: "not-found"},
		{name: "unknown type", target: "/fhir/Spaceship/p1", status: 404, code: "not-found"},
		{name: "lower-case type", target: "/fhir/patient/p1", status: 404, code: "not-found"},
		{name: "deleted", target: "/fhir/Patient/p3", status: 410, code: "deleted"},
		{name: "xml accept", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/fhir+xml"}, status: 406, code: "not-supported"},
		{name: "json with q=0", target: "/fhir/Patient/p1", hdr: []string{"Accept", "application/fhir+json;q=0, text/html"}, status: 406, code: "not-supported"},
		{name: "turtle accept", target: "/fhir/Patient/p1", hdr: []string{"Accept", "text/turtle"}, status: 406, code: "not-supported"},
		{name: "format xml", target: "/fhir/Patient/p1?_format=xml", status: 406, code: "not-supported"},
		{name: "format xml beats json accept", target: "/fhir/Patient/p1?_format=application/fhir%2Bxml", hdr: []string{"Accept", "application/fhir+json"}, status: 406, code: "not-supported"},
		{name: "unknown route", target: "/fhir/Patient/p1/_history/1/extra", status: 404, code: "not-found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do("GET", tc.target, "", tc.hdr...)
			if tc.code != "" {
				outcome(t, w, tc.status, tc.code)
				if w.Header().Get("ETag") != "" {
					t.Errorf("error response carries an ETag")
				}
				return
			}
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != tc.ct {
				t.Errorf("Content-Type = %q, want %q", got, tc.ct)
			}
			if w.Body.String() != string(cur.Body) {
				t.Errorf("body is not the stored bytes:\n got %s\nwant %s", w.Body, cur.Body)
			}
			if got := w.Header().Get("ETag"); got != `W/"2"` {
				t.Errorf("ETag = %q", got)
			}
			if got := w.Header().Get("Last-Modified"); got != "Fri, 01 Mar 2024 11:00:00 GMT" {
				t.Errorf("Last-Modified = %q", got)
			}
			if w.Header().Get(HeaderRequestID) == "" {
				t.Errorf("no request id")
			}
			parseFHIR(t, w.Body.Bytes())
			if tc.name == "current version" {
				writeSample(t, "read.json", w.Body.Bytes())
			}
		})
	}
}

func TestConditionalRead(t *testing.T) {
	env := newEnv(t, allowAll)
	tests := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"if-none-match current", []string{"If-None-Match", `W/"2"`}, 304},
		{"if-none-match strong form", []string{"If-None-Match", `"2"`}, 304},
		{"if-none-match list", []string{"If-None-Match", `W/"1", W/"2"`}, 304},
		{"if-none-match star", []string{"If-None-Match", `*`}, 304},
		{"if-none-match old", []string{"If-None-Match", `W/"1"`}, 200},
		{"if-modified-since later", []string{"If-Modified-Since", "Fri, 01 Mar 2024 12:00:00 GMT"}, 304},
		{"if-modified-since same second", []string{"If-Modified-Since", "Fri, 01 Mar 2024 11:00:00 GMT"}, 304},
		{"if-modified-since earlier", []string{"If-Modified-Since", "Fri, 01 Mar 2024 10:30:00 GMT"}, 200},
		{"if-none-match wins over if-modified-since", []string{"If-None-Match", `W/"1"`, "If-Modified-Since", "Fri, 01 Mar 2024 12:00:00 GMT"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do("GET", "/fhir/Patient/p1", "", tc.hdr...)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			if tc.status == 304 && w.Body.Len() != 0 {
				t.Errorf("304 with a body")
			}
			if w.Header().Get("ETag") != `W/"2"` {
				t.Errorf("ETag = %q", w.Header().Get("ETag"))
			}
		})
	}
}

func TestVRead(t *testing.T) {
	env := newEnv(t, allowAll)
	v1, _ := env.fs.VRead(t.Context(), "Patient", "p1", 1)
	tests := []struct {
		name   string
		target string
		status int
		code   string
	}{
		{"version 1", "/fhir/Patient/p1/_history/1", 200, ""},
		{"unknown version", "/fhir/Patient/p1/_history/9", 404, "not-found"},
		{"non-numeric version", "/fhir/Patient/p1/_history/abc", 404, "not-found"},
		{"deleted version", "/fhir/Patient/p3/_history/2", 410, "deleted"},
		{"version before deletion", "/fhir/Patient/p3/_history/1", 200, ""},
		{"unknown type", "/fhir/Nope/p1/_history/1", 404, "not-found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do("GET", tc.target, "")
			if tc.code != "" {
				outcome(t, w, tc.status, tc.code)
				return
			}
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			parseFHIR(t, w.Body.Bytes())
			if w.Header().Get("ETag") != `W/"1"` {
				t.Errorf("ETag = %q", w.Header().Get("ETag"))
			}
			if tc.name == "version 1" && w.Body.String() != string(v1.Body) {
				t.Errorf("body is not version 1")
			}
		})
	}
}

func TestHistory(t *testing.T) {
	env := newEnv(t, allowAll)
	t.Run("deleted resource", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient/p3/_history", "")
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		m := parseFHIR(t, w.Body.Bytes())
		writeSample(t, "history.json", w.Body.Bytes())
		if m["type"] != "history" || m["total"] != 2.0 {
			t.Fatalf("type/total = %v/%v", m["type"], m["total"])
		}
		del := get(m, "entry", 0).(map[string]any)
		if del["resource"] != nil || get(del, "request", "method") != "DELETE" || get(del, "request", "url") != "Patient/p3" {
			t.Errorf("deletion entry = %v", del)
		}
		if get(del, "response", "etag") != `W/"2"` || get(del, "response", "lastModified") != "2024-03-01T12:00:00.000Z" {
			t.Errorf("deletion response = %v", del["response"])
		}
		if get(del, "fullUrl") != testBase+"/Patient/p3" {
			t.Errorf("fullUrl = %v", get(del, "fullUrl"))
		}
		created := get(m, "entry", 1).(map[string]any)
		if get(created, "request", "method") != "POST" || get(created, "request", "url") != "Patient" ||
			get(created, "response", "status") != "201 Created" || get(created, "resource", "id") != "p3" {
			t.Errorf("create entry = %v", created)
		}
	})
	t.Run("paging", func(t *testing.T) {
		w := env.do("GET", "/fhir/Patient/p1/_history?_count=1", "")
		m := parseFHIR(t, w.Body.Bytes())
		if n := len(get(m, "entry").([]any)); n != 1 {
			t.Fatalf("%d entries", n)
		}
		if get(m, "entry", 0, "resource", "meta", "versionId") != "2" || get(m, "entry", 0, "request", "method") != "PUT" {
			t.Errorf("first entry is not the newest update: %v", get(m, "entry", 0))
		}
		if next := linkURL(m, "next"); next != testBase+"/Patient/p1/_history?_count=1&_offset=1" {
			t.Errorf("next = %q", next)
		}
		w = env.do("GET", "/fhir/Patient/p1/_history?_count=1&_offset=1", "")
		m = parseFHIR(t, w.Body.Bytes())
		if linkURL(m, "next") != "" || linkURL(m, "previous") == "" {
			t.Errorf("links on the last page: %v", m["link"])
		}
	})
	t.Run("errors", func(t *testing.T) {
		outcome(t, env.do("GET", "/fhir/Patient/zz/_history", ""), 404, "not-found")
		outcome(t, env.do("GET", "/fhir/Patient/p1/_history?_count=-1", ""), 400, "invalid")
		issue := outcome(t, env.do("GET", "/fhir/Patient/p1/_history?_at=2024", ""), 400, "invalid")
		if get(issue, "expression", 0) != "_at" {
			t.Errorf("expression = %v", issue["expression"])
		}
		if w := env.do("GET", "/fhir/Patient/p1/_history?_at=2024", "", "Prefer", "handling=lenient"); w.Code != 200 {
			t.Errorf("lenient: status %d", w.Code)
		}
	})
}

func linkURL(bundle map[string]any, rel string) string {
	links, _ := bundle["link"].([]any)
	for _, l := range links {
		if get(l, "relation") == rel {
			s, _ := get(l, "url").(string)
			return s
		}
	}
	return ""
}

func TestWriteInteractions(t *testing.T) {
	env := newEnv(t, allowAll)
	tests := []struct {
		name, method, target string
		status               int
		code                 string
	}{
		{"create", "POST", "/fhir/Patient", 405, "not-supported"},
		{"update", "PUT", "/fhir/Patient/p1", 405, "not-supported"},
		{"patch", "PATCH", "/fhir/Patient/p1", 405, "not-supported"},
		{"delete", "DELETE", "/fhir/Patient/p1", 405, "not-supported"},
		{"conditional delete", "DELETE", "/fhir/Patient?name=x", 405, "not-supported"},
		{"transaction", "POST", "/fhir", 405, "not-supported"},
		{"create unknown type", "POST", "/fhir/Spaceship", 404, "not-found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do(tc.method, tc.target, `{"resourceType":"Patient"}`, "Content-Type", "application/fhir+json")
			outcome(t, w, tc.status, tc.code)
			if tc.status == 405 && w.Header().Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
	if v := env.fs.versions[store.Key{Type: "Patient", ID: "p1"}]; len(v) != 2 {
		t.Errorf("store changed")
	}
}

func TestServerErrors(t *testing.T) {
	secret := errors.New("sqlite: constraint failed: Patient name Jane Doe")
	tests := []struct {
		name   string
		setup  func(*fakeStore)
		target string
	}{
		{"store error on read", func(f *fakeStore) { f.fail = secret }, "/fhir/Patient/p1"},
		{"store error on search", func(f *fakeStore) { f.fail = secret }, "/fhir/Observation?code=8867-4"},
		{"panic in store", func(f *fakeStore) { f.panics = true }, "/fhir/Patient/p1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, allowAll)
			tc.setup(env.fs)
			w := env.do("GET", tc.target, "")
			issue := outcome(t, w, 500, "exception")
			if get(issue, "details", "text") != "internal server error" || issue["diagnostics"] != nil {
				t.Errorf("issue = %v", issue)
			}
			if strings.Contains(w.Body.String(), "Jane") || strings.Contains(w.Body.String(), "sqlite") {
				t.Errorf("body leaks the cause: %s", w.Body)
			}
			if strings.Contains(env.log.String(), "Jane") {
				t.Errorf("log leaks the panic value: %s", env.log)
			}
			if !strings.Contains(env.log.String(), `"level":"ERROR"`) || !strings.Contains(env.log.String(), `"cause_type":"`) {
				t.Errorf("5xx not logged at error: %s", env.log)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	env := newEnv(t, allowAll)
	env.do("GET", "/fhir/Patient?name=doe&_count=2", "", "X-Request-Id", "req-42")
	env.do("GET", "/fhir/Patient/nope?family=Smith", "")
	logs := env.log.String()
	for _, want := range []string{`"route":"/fhir/:type"`, `"request_id":"req-42"`, `"status":200`, `"route":"/fhir/:type/:id"`, `"status":404`, `"latency_us":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	for _, leak := range []string{"doe", "Smith", "_count", "nope", "?"} {
		if strings.Contains(logs, leak) {
			t.Errorf("log leaks %q:\n%s", leak, logs)
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	e := ErrNotFound.WithDetails("x").WithExpression("a")
	if !errors.Is(e, ErrNotFound) || errors.Is(e, ErrGone) {
		t.Errorf("errors.Is does not match by kind")
	}
	if ErrNotFound.Details != "resource not found" || ErrNotFound.Expression != nil {
		t.Errorf("sentinel was modified: %+v", ErrNotFound)
	}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"store not found", store.ErrNotFound, 404, "not-found"},
		{"store gone wrapped", errors.Join(errors.New("x"), store.ErrGone), 410, "deleted"},
		{"http max bytes", &http.MaxBytesError{Limit: 1}, 413, "too-costly"},
		{"unknown", errors.New("boom"), 500, "exception"},
		{"deadline", errContextDeadline(), 503, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AsError(tc.err)
			if got.Status != tc.status || got.Code != tc.code {
				t.Errorf("AsError = %d %s, want %d %s", got.Status, got.Code, tc.status, tc.code)
			}
		})
	}
	// Every kind in the table has a distinct status and an IssueType.
	var seen []int
	for _, k := range kinds {
		if slices.Contains(seen, k.status) || k.code == "" || k.details == "" {
			t.Errorf("bad kind row %+v", k)
		}
		seen = append(seen, k.status)
	}
}

func errContextDeadline() error {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	return ctx.Err()
}

func TestRouting(t *testing.T) {
	env := newEnv(t, allowAll)
	tests := []struct {
		name, method, target string
		status               int
		code                 string
	}{
		{"base", "GET", "/fhir", 404, "not-found"},
		{"base slash", "GET", "/fhir/", 404, "not-found"},
		{"deep unknown path", "GET", "/fhir/Patient/p1/foo/bar/baz", 404, "not-found"},
		{"everything on other type", "GET", "/fhir/Observation/o01/$everything", 404, "not-found"},
		{"options", "OPTIONS", "/fhir/Patient/p1", 405, "not-supported"},
		{"trace", "TRACE", "/fhir/Patient", 405, "not-supported"},
		{"post to history", "POST", "/fhir/Patient/p1/_history", 405, "not-supported"},
		{"escaped everything", "GET", "/fhir/Patient/p1/%24everything", 200, ""},
		{"get _search", "GET", "/fhir/Patient/_search?name=doe", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.do(tc.method, tc.target, "")
			if tc.code == "" {
				if w.Code != tc.status {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				parseFHIR(t, w.Body.Bytes())
				return
			}
			outcome(t, w, tc.status, tc.code)
		})
	}
	t.Run("other paths keep their error handler", func(t *testing.T) {
		w := env.do("GET", "/auth/nothing", "")
		if w.Code != 404 || strings.Contains(w.Body.String(), "OperationOutcome") {
			t.Errorf("non-FHIR path rendered as FHIR: %d %s", w.Code, w.Body)
		}
	})
}

// TestAppendHTTPDate: a read's Last-Modified (docs/design/security.md
// PERF-ST-19) is byte for byte what time.Time.AppendFormat(http.TimeFormat)
// gives, over every month and weekday, the ends of a day, non-UTC zones
// and years outside four digits.
func TestAppendHTTPDate(t *testing.T) {
	times := []time.Time{
		time.Date(2024, 3, 1, 11, 0, 0, 0, time.UTC),
		time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 6, 23, 30, 5, 0, time.FixedZone("x", -7*3600)),
		time.Date(2026, 12, 7, 0, 30, 5, 0, time.FixedZone("y", 5*3600+1800)),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		times = append(times, time.Unix(rng.Int64N(1<<36)-1<<34, rng.Int64N(1e9)))
	}
	for _, tm := range times {
		want := string(tm.UTC().AppendFormat([]byte("x"), http.TimeFormat))
		if got := string(appendHTTPDate([]byte("x"), tm)); got != want {
			t.Fatalf("%v: %q, want %q", tm, got, want)
		}
	}
}
