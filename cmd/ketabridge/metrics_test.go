package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestMetricsLoopbackOnly(t *testing.T) {
	m := newMetrics()
	m.cache.WithLabelValues("read", "hit").Inc()
	e := echo.New()
	e.GET("/metrics", loopbackOnly(m.handler()))
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
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.RemoteAddr = tc.remote
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(w.Body.String(), `ketabridge_cache_requests_total{op="read",result="hit"} 1`) {
			t.Errorf("%s: metrics body lacks the cache counter:\n%.500s", tc.name, w.Body)
		}
	}
}
