package ops

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// ProbeTimeout bounds each dependency's ping: a cheap query on a connection
// of the probe's own, so a short bound is enough and a load balancer hears
// promptly when the database is really gone.
const ProbeTimeout = time.Second

// Dependency is something the gateway needs, probed by name.
type Dependency struct {
	Name string
	Ping func(ctx context.Context) error
	// Required: the gateway cannot serve while it is down (/readyz 503);
	// otherwise it serves degraded.
	Required bool
	// Lag, when set, reports how far the dependency's writer is behind (how
	// long its oldest write in flight has run). It is shown in /readyz
	// beside the state and never changes it: a busy writer is a healthy one.
	Lag func() time.Duration
}

// Prober pings the dependencies every interval, keeping their state for
// /readyz and the dependency_up gauge, and logs transitions (not every
// failure: at 3 a.m. one line per outage and one per recovery).
type Prober struct {
	deps []Dependency
	m    *Metrics
	log  *slog.Logger

	mu   sync.Mutex
	down map[string]bool
}

// NewProber returns a prober of deps reporting to m.
func NewProber(deps []Dependency, m *Metrics, log *slog.Logger) *Prober {
	return &Prober{deps: deps, m: m, log: log, down: map[string]bool{}}
}

// check pings every dependency now and returns the names of those down and
// whether any required one is.
func (p *Prober) check(ctx context.Context) (down []string, fatal bool) {
	for _, d := range p.deps {
		pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
		err := d.Ping(pctx)
		cancel()
		p.mu.Lock()
		was := p.down[d.Name]
		p.down[d.Name] = err != nil
		p.mu.Unlock()
		if err != nil {
			down = append(down, d.Name)
			fatal = fatal || d.Required
			p.m.DependencyError(d.Name)
			p.m.depUp.WithLabelValues(d.Name).Set(0)
			if !was {
				p.log.Error("dependency down", "dependency", d.Name, "err", err)
			}
			continue
		}
		p.m.depUp.WithLabelValues(d.Name).Set(1)
		if was {
			p.log.Info("dependency back", "dependency", d.Name)
		}
	}
	return down, fatal
}

// Run probes every interval until ctx is done.
func (p *Prober) Run(ctx context.Context, interval time.Duration) {
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

// Readyz answers /readyz from a fresh probe: 200 "ready" when everything
// answers, 200 "degraded" when only optional dependencies are down (Redis:
// reads are served from the store), 503 "unavailable" when a required one
// (the database) is. The body names what is down and, for a dependency
// that reports it, its writer's lag in seconds (writer_lag_seconds), which
// never changes the status.
func (p *Prober) Readyz(c echo.Context) error {
	down, fatal := p.check(c.Request().Context())
	checks := map[string]string{}
	for _, d := range p.deps {
		checks[d.Name] = "ok"
	}
	for _, n := range down {
		checks[n] = "down"
	}
	body := map[string]any{"status": "ready", "checks": checks}
	for _, d := range p.deps {
		if d.Lag != nil {
			lag, _ := body["writer_lag_seconds"].(map[string]float64)
			if lag == nil {
				lag = map[string]float64{}
				body["writer_lag_seconds"] = lag
			}
			lag[d.Name] = d.Lag().Seconds()
		}
	}
	status := http.StatusOK
	switch {
	case fatal:
		status, body["status"], body["down"] = http.StatusServiceUnavailable, "unavailable", down
	case len(down) > 0:
		body["status"], body["down"] = "degraded", down
	}
	return c.JSON(status, body)
}

// Healthz is liveness: the process answers (always 200 while it runs).
func Healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// Register routes /healthz, /readyz and, unless metrics have a listener of
// their own, /metrics for loopback callers on e.
func Register(e *echo.Echo, p *Prober, m *Metrics, ownMetricsListener bool) {
	e.GET("/healthz", Healthz)
	e.GET("/readyz", p.Readyz)
	if !ownMetricsListener {
		e.GET("/metrics", LoopbackOnly(m.Handler()))
	}
}
