package fhir

import (
	"fmt"
	"strings"
	"testing"
)

// manyParams is a query with patient=pid followed by n more parameters.
func manyParams(pid string, n int) string {
	var b strings.Builder
	b.WriteString("patient=" + pid)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "&x%d=1", i)
	}
	return b.String()
}

// TestQueryIsParsedWholeOrRefused: docs/design/security.md LIM-2. A query
// net/url cannot parse in full (over 10,000 parameters, a ";" separator, a
// bad escape) lost its parameters silently, so
// Observation?patient=p1&x1=1&...&x10001=1 answered 200 with every
// patient's Observations. Every door that reads parameters refuses it with
// a 400 OperationOutcome.
func TestQueryIsParsedWholeOrRefused(t *testing.T) {
	env := newEnv(t, allowAll)
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	lenientHdr := []string{"Prefer", "handling=lenient"}
	for _, q := range []string{
		manyParams("p1", 10001),
		manyParams("p1", 1000), // 1,001 parameters: over search.MaxParams
		"patient=p1;x=1",
		"patient=p1&x=%ZZ",
		"patient=p1&name=%FF",
		"patient=p1&name=a%00",
	} {
		short := q[:min(len(q), 30)]
		for _, target := range []string{"/fhir/Observation?", "/fhir/Observation/_search?",
			"/fhir/Patient/p1/_history?", "/fhir/Patient/p1/$everything?", "/fhir/Patient/p1?", "/fhir/metadata?"} {
			w := env.do("GET", target+q, "", lenientHdr...)
			if w.Code == 200 {
				t.Errorf("GET %s%s: 200, want 400", target, short)
				continue
			}
			outcome(t, w, 400, "invalid")
		}
		w := env.do("POST", "/fhir/Observation/_search", q, append(form, lenientHdr...)...)
		if len(q) > 4096 { // the test server's body limit
			outcome(t, w, 413, "too-costly")
		} else {
			outcome(t, w, 400, "invalid")
		}
		w = env.do("POST", "/fhir/Observation/_search?"+q, "code=8867-4", append(form, lenientHdr...)...)
		outcome(t, w, 400, "invalid")
	}
	t.Run("1,000 parameters are kept, all of them", func(t *testing.T) {
		w := env.do("GET", "/fhir/Observation?"+manyParams("p2", 998)+"&_count=100", "", lenientHdr...)
		if w.Code != 200 || strings.Contains(w.Body.String(), "Patient/p1") || !strings.Contains(w.Body.String(), "Patient/p2") {
			t.Fatalf("status %d: %.300s", w.Code, w.Body)
		}
	})
	t.Run("URL and body together", func(t *testing.T) {
		w := env.do("POST", "/fhir/Observation/_search?"+manyParams("p1", 600), manyParams("p1", 450), append(form, lenientHdr...)...)
		outcome(t, w, 400, "invalid")
	})
}

// TestHeadMirrorsGet: docs/design/security.md LIM-3. HEAD is served wherever
// GET is, with the GET's status and headers and no body; it was 405.
func TestHeadMirrorsGet(t *testing.T) {
	env := newEnv(t, allowAll)
	for _, target := range []string{"/fhir/Patient/p1", "/fhir/Patient/p1/_history/1", "/fhir/Patient/p1/_history",
		"/fhir/Observation?patient=p1", "/fhir/Observation/_search?patient=p1", "/fhir/Patient/p1/$everything",
		"/fhir/metadata", "/fhir/Patient/nobody", "/fhir/Patient/p3", "/fhir/Spaceship"} {
		get := env.do("GET", target, "")
		head := env.do("HEAD", target, "")
		if head.Code != get.Code || head.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d with %d bytes; GET %d", target, head.Code, head.Body.Len(), get.Code)
		}
		for _, h := range []string{"Content-Type", "ETag", "Last-Modified", "Cache-Control"} {
			if head.Header().Get(h) != get.Header().Get(h) {
				t.Errorf("HEAD %s: %s %q, GET %q", target, h, head.Header().Get(h), get.Header().Get(h))
			}
		}
	}
	if w := env.doAs("", "HEAD", "/fhir/Patient/p1", ""); w.Code != 401 || w.Body.Len() != 0 {
		t.Errorf("HEAD without a token: %d, %d bytes", w.Code, w.Body.Len())
	}
}
