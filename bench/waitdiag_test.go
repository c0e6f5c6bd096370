package bench

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"strings"
	"testing"
)

// TestHandlerBuckets pins --waitprofile's reading of the gateway's
// latency histogram (PERF-ST-14): bucket counts summed over routes by
// bound, other metrics ignored, and the shares over each bound printed.
func TestHandlerBuckets(t *testing.T) {
	text := strings.Join([]string{
		`# TYPE ketabridge_http_request_duration_seconds histogram`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type/:id",le="0.001"} 80`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type/:id",le="0.005"} 95`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type/:id",le="+Inf"} 100`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type",le="0.001"} 0`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type",le="0.005"} 50`,
		`ketabridge_http_request_duration_seconds_bucket{route="/fhir/:type",le="+Inf"} 100`,
		`ketabridge_http_request_duration_seconds_sum{route="/fhir/:type"} 12.5`,
		`ketabridge_http_requests_total{route="/fhir/:type",code="200"} 100`,
	}, "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(text))
	}))
	defer srv.Close()
	got, err := handlerBuckets(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"0.001": 80, "0.005": 145, "+Inf": 200}
	if len(got) != len(want) {
		t.Fatalf("buckets %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("bucket %s = %v, want %v", k, got[k], v)
		}
	}
	var out bytes.Buffer
	printHandlerTail(&out, "read", map[string]float64{}, got)
	// 200 requests: 120 over 1 ms (60 %), 55 over 5 ms (27.5 %).
	for _, s := range []string{"200 requests", "over 1 ms 60.00 %", "over 5 ms 27.50 %"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output %q lacks %q", out.String(), s)
		}
	}
	if _, err := handlerBuckets(context.Background(), srv.Client(), srv.URL+"/nothing"); err == nil {
		t.Error("a failed /metrics read gave no error")
	}
}

// TestHistDelta pins the difference of two runtime/metrics histogram
// reads and its quantiles (upper bounds of the holding bucket).
func TestHistDelta(t *testing.T) {
	buckets := []float64{math.Inf(-1), 0.001, 0.002, 0.004, math.Inf(1)}
	a := &metrics.Float64Histogram{Counts: []uint64{0, 5, 0, 0}, Buckets: buckets}
	b := &metrics.Float64Histogram{Counts: []uint64{0, 95, 9, 1}, Buckets: buckets}
	h := histDelta(a, b)
	if h.n != 100 {
		t.Fatalf("n = %d, want 100", h.n)
	}
	if q := h.q(0.5); q != 0.002 {
		t.Errorf("p50 = %v, want 0.002", q)
	}
	if q := h.q(0.95); q != 0.004 {
		t.Errorf("p95 = %v, want 0.004", q)
	}
	// The last bucket is open: its lower bound stands for it.
	if q := h.q(0.999); q != 0.004 {
		t.Errorf("p99.9 = %v, want 0.004", q)
	}
	if h.max != 0.004 {
		t.Errorf("max = %v, want 0.004", h.max)
	}
	if e := histDelta(b, b); e.n != 0 || e.q(0.99) != 0 {
		t.Errorf("empty difference: n %d, p99 %v", e.n, e.q(0.99))
	}
}
