package ops

import (
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

// Metrics are the gateway's Prometheus metrics. Labels are route templates,
// status codes, operation and dependency names: never ids, query strings or
// anything else a request carries (docs/design/security.md PRIV-5).
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // route, code
	latency  *prometheus.HistogramVec // route
	cache    *prometheus.CounterVec   // op, result (hit, miss)
	cacheErr *prometheus.CounterVec   // op
	depErr   *prometheus.CounterVec   // dependency
	depUp    *prometheus.GaugeVec     // dependency

	// perRoute memoizes each route template's request counters (by status)
	// and latency observer (docs/design/security.md PERF-ST-19): resolving
	// them from the vectors hashes the label values on every request.
	routeMu  sync.RWMutex
	perRoute map[string]*routeMetrics
}

// routeMetrics are one route template's children of the request vectors.
type routeMetrics struct {
	latency prometheus.Observer
	mu      sync.RWMutex
	codes   map[int]prometheus.Counter
}

// maxRoutes bounds the memo of routes (templates and "unmatched": a
// fixed set, bounded all the same); past it the memo starts afresh.
const maxRoutes = 1024

// route returns route's memoized metrics.
func (m *Metrics) route(route string) *routeMetrics {
	m.routeMu.RLock()
	rm := m.perRoute[route]
	m.routeMu.RUnlock()
	if rm != nil {
		return rm
	}
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	if rm = m.perRoute[route]; rm != nil {
		return rm
	}
	if m.perRoute == nil || len(m.perRoute) >= maxRoutes {
		m.perRoute = map[string]*routeMetrics{}
	}
	rm = &routeMetrics{latency: m.latency.WithLabelValues(route), codes: map[int]prometheus.Counter{}}
	m.perRoute[route] = rm
	return rm
}

// requests returns the request counter of route and status.
func (rm *routeMetrics) requests(m *Metrics, route string, status int) prometheus.Counter {
	rm.mu.RLock()
	c := rm.codes[status]
	rm.mu.RUnlock()
	if c != nil {
		return c
	}
	c = m.requests.WithLabelValues(route, strconv.Itoa(status))
	rm.mu.Lock()
	if len(rm.codes) < maxRoutes {
		rm.codes[status] = c
	}
	rm.mu.Unlock()
	return c
}

// NewMetrics returns the metrics on a registry of their own, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ketabridge_http_requests_total",
		Help: "HTTP requests by route template and status code.",
	}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ketabridge_http_request_duration_seconds",
		Help:    "HTTP request latency by route template.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route"})
	m.cache = counterVec("ketabridge_cache_requests_total",
		"Read-cache lookups by store operation and result (hit or miss).", "op", "result")
	m.cacheErr = counterVec("ketabridge_cache_errors_total",
		"Read-cache operations that failed (served from the store instead) by operation.", "op")
	m.depErr = counterVec("ketabridge_dependency_errors_total",
		"Failed calls or probes of a dependency (database, redis).", "dependency")
	m.depUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ketabridge_dependency_up",
		Help: "1 when the dependency answered its last probe, else 0.",
	}, []string{"dependency"})
	m.reg.MustRegister(m.requests, m.latency, m.cache, m.cacheErr, m.depErr, m.depUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Middleware counts and times every routed request by its route template.
func (m *Metrics) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
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
		rm := m.route(route)
		rm.requests(m, route, status).Inc()
		rm.latency.Observe(time.Since(start).Seconds())
		return err
	}
}

// DependencyError counts one failed call of a dependency ("redis",
// "database").
func (m *Metrics) DependencyError(dependency string) {
	m.depErr.WithLabelValues(dependency).Inc()
}

// CacheCounters returns the read cache's observer functions for the store
// operations ops: hit and miss count lookups by operation and result, fail
// counts failed cache operations and calls onError (nil: nothing else). The
// counters are resolved once here: hit and miss run on every read, and an
// operation outside ops counts nowhere rather than panicking.
func (m *Metrics) CacheCounters(ops []string, onError func()) (hit, miss, fail func(op string)) {
	hits, misses, errs := map[string]prometheus.Counter{}, map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
	for _, op := range ops {
		hits[op] = m.cache.WithLabelValues(op, "hit")
		misses[op] = m.cache.WithLabelValues(op, "miss")
		errs[op] = m.cacheErr.WithLabelValues(op)
	}
	inc := func(cs map[string]prometheus.Counter) func(string) {
		return func(op string) {
			if c, ok := cs[op]; ok {
				c.Inc()
			}
		}
	}
	countErr := inc(errs)
	return inc(hits), inc(misses), func(op string) {
		countErr(op)
		if onError != nil {
			onError()
		}
	}
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// LoopbackOnly serves h to loopback callers and answers everyone else 404:
// /metrics on the public listener is for a local agent; a remote scraper
// gets its own listener (docs/design/security.md PRIV-5). A request a
// reverse proxy on the same host forwarded (it says so in Forwarded /
// X-Forwarded-For) comes from loopback but not from a local agent: refused
// too.
func LoopbackOnly(h http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !auth.IsLoopback(r.RemoteAddr) || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
			return echo.NewHTTPError(http.StatusNotFound)
		}
		h.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}
