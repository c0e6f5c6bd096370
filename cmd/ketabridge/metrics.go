package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ketabridge/ketabridge/auth"
)

// metrics are the gateway's Prometheus metrics. Labels are route templates,
// status codes, operation and dependency names: never ids, query strings or
// anything else a request carries (no PHI).
type metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // route, code
	latency  *prometheus.HistogramVec // route
	cache    *prometheus.CounterVec   // op, result (hit, miss)
	cacheErr *prometheus.CounterVec   // op
	depErr   *prometheus.CounterVec   // dependency
	depUp    *prometheus.GaugeVec     // dependency
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ketabridge_http_requests_total",
		Help: "HTTP requests by route template and status code.",
	}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ketabridge_http_request_duration_seconds",
		Help:    "HTTP request latency by route template.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ketabridge_cache_requests_total",
		Help: "Read-cache lookups by store operation and result (hit or miss).",
	}, []string{"op", "result"})
	m.cacheErr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ketabridge_cache_errors_total",
		Help: "Read-cache operations that failed (served from the store instead) by operation.",
	}, []string{"op"})
	m.depErr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ketabridge_dependency_errors_total",
		Help: "Failed calls or probes of a dependency (database, redis).",
	}, []string{"dependency"})
	m.depUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ketabridge_dependency_up",
		Help: "1 when the dependency answered its last probe, else 0.",
	}, []string{"dependency"})
	m.reg.MustRegister(m.requests, m.latency, m.cache, m.cacheErr, m.depErr, m.depUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// middleware counts and times every routed request by its route template.
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		if err != nil && !c.Response().Committed {
			if he, ok := err.(*echo.HTTPError); ok {
				status = he.Code
			} else {
				status = http.StatusInternalServerError
			}
		}
		m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		return err
	}
}

// handler serves the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// loopbackOnly serves h to loopback callers and answers everyone else 404:
// /metrics on the public listener is for a local agent; a remote scraper
// gets its own listener (--metrics-addr). A request a reverse proxy on the
// same host forwarded (it says so in Forwarded / X-Forwarded-For) comes from
// loopback but not from a local agent: refused too.
func loopbackOnly(h http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !auth.IsLoopback(r.RemoteAddr) || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
			return echo.NewHTTPError(http.StatusNotFound)
		}
		h.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

// dependency is something the gateway needs, probed by name.
type dependency struct {
	name string
	ping func(ctx context.Context) error
	// required: the gateway cannot serve while it is down (/readyz 503);
	// otherwise it serves degraded.
	required bool
}

// prober pings the dependencies every interval, keeping their state for
// /readyz and the dependency_up gauge, and logs transitions (not every
// failure: at 3 a.m. one line per outage and one per recovery).
type prober struct {
	deps []dependency
	m    *metrics
	log  *slog.Logger

	mu   sync.Mutex
	down map[string]bool
}

func newProber(deps []dependency, m *metrics, log *slog.Logger) *prober {
	return &prober{deps: deps, m: m, log: log, down: map[string]bool{}}
}

// check pings every dependency now and returns the names of those down and
// whether any required one is.
func (p *prober) check(ctx context.Context) (down []string, fatal bool) {
	for _, d := range p.deps {
		pctx, cancel := context.WithTimeout(ctx, readyzTimeout)
		err := d.ping(pctx)
		cancel()
		p.mu.Lock()
		was := p.down[d.name]
		p.down[d.name] = err != nil
		p.mu.Unlock()
		if err != nil {
			down = append(down, d.name)
			fatal = fatal || d.required
			p.m.depErr.WithLabelValues(d.name).Inc()
			p.m.depUp.WithLabelValues(d.name).Set(0)
			if !was {
				p.log.Error("dependency down", "dependency", d.name, "err", err)
			}
			continue
		}
		p.m.depUp.WithLabelValues(d.name).Set(1)
		if was {
			p.log.Info("dependency back", "dependency", d.name)
		}
	}
	return down, fatal
}

// run probes every interval until ctx is done.
func (p *prober) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readyz answers /readyz from a fresh probe: 200 "ready" when everything
// answers, 200 "degraded" when only optional dependencies are down (Redis:
// reads are served from the store), 503 "unavailable" when a required one
// (the database) is. The body names what is down.
func (p *prober) readyz(c echo.Context) error {
	down, fatal := p.check(c.Request().Context())
	checks := map[string]string{}
	for _, d := range p.deps {
		checks[d.name] = "ok"
	}
	for _, n := range down {
		checks[n] = "down"
	}
	switch {
	case fatal:
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": down, "checks": checks})
	case len(down) > 0:
		return c.JSON(http.StatusOK, map[string]any{"status": "degraded", "down": down, "checks": checks})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}
