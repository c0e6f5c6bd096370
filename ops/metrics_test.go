package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// scrape returns the metrics text as a loopback agent sees it.
func scrape(t *testing.T, e *echo.Echo) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", w.Code)
	}
	return w.Body.String()
}

func TestMetricsLoopbackOnly(t *testing.T) {
	m := NewMetrics()
	hit, _, _ := m.CacheCounters([]string{"read"}, nil)
	hit("read")
	e := echo.New()
	e.GET("/metrics", LoopbackOnly(m.Handler()))
	tests := []struct {
		name   string
		remote string
		header map[string]string
		want   int
	}{
		{"local agent", "127.0.0.1:5555", nil, http.StatusOK},
		{"local agent v6", "[::1]:5555", nil, http.StatusOK},
		{"remote", "203.0.113.9:5555", nil, http.StatusNotFound},
		{"through a local proxy", "127.0.0.1:5555", map[string]string{"X-Forwarded-For": "203.0.113.9"}, http.StatusNotFound},
		{"through a local proxy (Forwarded)", "127.0.0.1:5555", map[string]string{"Forwarded": "for=203.0.113.9"}, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.RemoteAddr = tc.remote
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			e.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Errorf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusOK && !strings.Contains(w.Body.String(), `ketabridge_cache_requests_total{op="read",result="hit"} 1`) {
				t.Errorf("metrics body lacks the cache counter:\n%.500s", w.Body)
			}
		})
	}
}

// TestMiddlewareLabels checks that requests count by route template, never
// by the path a request carries (docs/design/security.md PRIV-5).
func TestMiddlewareLabels(t *testing.T) {
	m := NewMetrics()
	e := echo.New()
	e.Use(m.Middleware)
	e.GET("/fhir/Patient/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/metrics", LoopbackOnly(m.Handler()))
	for _, path := range []string{"/fhir/Patient/jane-doe-1970", "/fhir/Patient/p2", "/nowhere/jane"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		e.ServeHTTP(httptest.NewRecorder(), req)
	}
	body := scrape(t, e)
	for _, want := range []string{
		`ketabridge_http_requests_total{code="200",route="/fhir/Patient/:id"} 2`,
		`ketabridge_http_requests_total{code="404",route="unmatched"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in:\n%.2000s", want, body)
		}
	}
	if strings.Contains(body, "jane") {
		t.Error("a request path reached a label")
	}
}

func TestCacheCounters(t *testing.T) {
	m := NewMetrics()
	errs := 0
	hit, miss, fail := m.CacheCounters([]string{"read", "search"}, func() { errs++ })
	hit("read")
	miss("search")
	miss("search")
	fail("read")
	hit("not-an-op") // counted nowhere, no panic
	e := echo.New()
	e.GET("/metrics", LoopbackOnly(m.Handler()))
	body := scrape(t, e)
	for _, want := range []string{
		`ketabridge_cache_requests_total{op="read",result="hit"} 1`,
		`ketabridge_cache_requests_total{op="search",result="miss"} 2`,
		`ketabridge_cache_errors_total{op="read"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s", want)
		}
	}
	if strings.Contains(body, "not-an-op") || errs != 1 {
		t.Errorf("unknown op counted, or onError called %d times", errs)
	}
}

func TestReadyz(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	tests := []struct {
		name   string
		deps   []Dependency
		status int
		want   string
		down   []string
	}{
		{"all up", []Dependency{{Name: "database", Ping: up, Required: true}, {Name: "redis", Ping: up, Required: false}}, 200, "ready", nil},
		{"optional down", []Dependency{{Name: "database", Ping: up, Required: true}, {Name: "redis", Ping: down, Required: false}}, 200, "degraded", []string{"redis"}},
		{"required down", []Dependency{{Name: "database", Ping: down, Required: true}, {Name: "redis", Ping: up, Required: false}}, 503, "unavailable", []string{"database"}},
		// A writer busy for a minute is reported, and the gateway is ready.
		{"writer busy", []Dependency{{Name: "database", Ping: up, Required: true, Lag: func() time.Duration { return time.Minute }}}, 200, "ready", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics()
			p := NewProber(tc.deps, m, slog.New(slog.DiscardHandler))
			e := echo.New()
			Register(e, p, m, false)
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			b, _ := io.ReadAll(w.Body)
			var got struct {
				Status string             `json:"status"`
				Down   []string           `json:"down"`
				Checks map[string]string  `json:"checks"`
				Lag    map[string]float64 `json:"writer_lag_seconds"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status || got.Status != tc.want || strings.Join(got.Down, ",") != strings.Join(tc.down, ",") {
				t.Errorf("%d %s", w.Code, b)
			}
			if len(got.Checks) != len(tc.deps) {
				t.Errorf("checks %v", got.Checks)
			}
			if want := tc.deps[0].Lag != nil; want != (got.Lag["database"] == 60) || len(got.Lag) > 1 {
				t.Errorf("writer lag %v", got.Lag)
			}
			for _, n := range tc.down {
				if !strings.Contains(scrape(t, e), `ketabridge_dependency_up{dependency="`+n+`"} 0`) {
					t.Errorf("%s not reported down", n)
				}
			}
		})
	}
}

// TestMiddlewareRouteMemo: the memoized children of the request vectors
// (docs/design/security.md PERF-ST-19) count each route and status apart,
// as resolving them per request did.
func TestMiddlewareRouteMemo(t *testing.T) {
	m := NewMetrics()
	e := echo.New()
	e.Use(m.Middleware)
	e.GET("/fhir/Patient/:id", func(c echo.Context) error {
		if c.Param("id") == "gone" {
			return c.String(http.StatusGone, "gone")
		}
		return c.String(http.StatusOK, "ok")
	})
	e.GET("/fhir/Observation/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/metrics", LoopbackOnly(m.Handler()))
	for _, path := range []string{"/fhir/Patient/a", "/fhir/Patient/gone", "/fhir/Patient/b", "/fhir/Observation/o",
		"/fhir/Patient/gone", "/fhir/Patient/c"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	body := scrape(t, e)
	for _, want := range []string{
		`ketabridge_http_requests_total{code="200",route="/fhir/Patient/:id"} 3`,
		`ketabridge_http_requests_total{code="410",route="/fhir/Patient/:id"} 2`,
		`ketabridge_http_requests_total{code="200",route="/fhir/Observation/:id"} 1`,
		`ketabridge_http_request_duration_seconds_count{route="/fhir/Patient/:id"} 5`,
		`ketabridge_http_request_duration_seconds_count{route="/fhir/Observation/:id"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in:\n%.3000s", want, body)
		}
	}
}
