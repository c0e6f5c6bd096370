package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// cmdBench synthesises patients into a temporary SQLite store, reports the
// ingest throughput, then measures read-by-id and search latency over HTTP
// on loopback with concurrent clients. Every loop is bounded by a request
// count and a time limit.
func cmdBench(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("bench")
	patients := cf.fs.Int("patients", 200, "number of synthetic patients")
	clients := cf.fs.Int("clients", 8, "concurrent HTTP clients")
	requests := cf.fs.Int("requests", 2000, "requests per measured interaction")
	limit := cf.fs.Duration("max-time", 60*time.Second, "time limit per measured interaction")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	if *patients < 1 || *clients < 1 || *requests < 1 {
		return &usageError{msg: "bench: --patients, --clients and --requests must be at least 1"}
	}
	log := newLogger(io.Discard, cfg.LogLevel)
	a, raw, cleanup, err := tempApp(ctx, cfg, log, *patients, 1)
	if err != nil {
		return err
	}
	defer cleanup()

	start := time.Now()
	_, sum, err := a.ingest.Ingest(ctx, raw)
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "ingest: %d records, %d resources in %s: %.0f resources/s (%d rejected)\n",
		len(raw), sum.Resources, el.Round(time.Millisecond), float64(sum.Resources)/el.Seconds(), sum.Rejected)

	var pids []string
	for _, r := range raw {
		var h clinic.Header
		if json.Unmarshal(r, &h) == nil && h.Kind == clinic.KindPatient {
			pids = append(pids, mapping.ResourceID(clinic.KindPatient, h.ID))
		}
	}
	if len(pids) == 0 {
		return fmt.Errorf("bench: no patients generated")
	}
	ec, err := a.newEcho(log)
	if err != nil {
		return err
	}
	srv := httptest.NewServer(ec)
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = *clients
	tok, err := a.toolToken(ctx, client, srv.URL, "system/*.rs")
	if err != nil {
		return fmt.Errorf("bench: token: %w", err)
	}

	cases := []struct {
		name string
		path func(i int) string
	}{
		{"read Patient/{id}", func(i int) string { return "/fhir/Patient/" + pids[i%len(pids)] }},
		{"search Observation?patient", func(i int) string {
			return "/fhir/Observation?patient=" + pids[i%len(pids)] + "&_count=20"
		}},
		// The search target: patient + code + date range, _count=50
		// (heart rate, LOINC 8867-4, recorded at every vitals set).
		{"search Obs?patient&code&date", func(i int) string {
			return "/fhir/Observation?patient=" + pids[i%len(pids)] +
				"&code=http://loinc.org|8867-4&date=ge2024-01-01&date=le2027-12-31&_count=50"
		}},
		{"search Encounter?patient&date", func(i int) string {
			return "/fhir/Encounter?patient=" + pids[i%len(pids)] + "&date=ge2020-01-01"
		}},
		{"Patient/{id}/$everything", func(i int) string {
			return "/fhir/Patient/" + pids[i%len(pids)] + "/$everything?_count=50"
		}},
	}
	for _, c := range cases {
		lat, errs, wall := measure(ctx, client, srv.URL, tok, c.path, *clients, *requests, *limit)
		if len(lat) == 0 {
			return fmt.Errorf("bench: %s: every request failed", c.name)
		}
		fmt.Fprintf(e.stdout, "%-32s n=%d errors=%d  p50=%s p95=%s p99=%s  %.0f req/s\n", c.name, len(lat), errs,
			pct(lat, 50), pct(lat, 95), pct(lat, 99), float64(len(lat))/wall.Seconds())
	}
	return nil
}

// measure runs n requests with the given concurrency (stopping at limit) and
// returns the sorted latencies of the 200 answers and the error count.
func measure(ctx context.Context, c *http.Client, base, token string, path func(int) string, clients, n int, limit time.Duration) ([]time.Duration, int, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var errs int
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				_, status, err := httpGet(ctx, c, base+path(i), "Authorization", "Bearer "+token)
				d := time.Since(t)
				mu.Lock()
				if err != nil || status != http.StatusOK {
					errs++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	slices.Sort(lat)
	return lat, errs, wall
}

// pct returns the p-th percentile of sorted latencies (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1].Round(10 * time.Microsecond)
}
