// Package server assembles a KetaBridge gateway from a validated Config: the
// store (SQLite or PostgreSQL), Redis, the read cache, the mapper and the
// ingest service, the SMART authorization server, the audit writer, the
// FHIR and ingest APIs and the operability endpoints; it serves them and
// shuts them down (docs/design/architecture.md). The binaries only parse
// their command lines into a Config and call it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/apps/course"
	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/fhir/auditlog"
	"github.com/ketabridge/ketabridge/ingestapi"
	"github.com/ketabridge/ketabridge/internal/benchonly"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/ops"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// auditCloseTimeout bounds how long Close waits for queued AuditEvents to
// be written before it closes the store.
const auditCloseTimeout = 10 * time.Second

// Gateway is an assembled gateway: its data side and the HTTP side on it.
type Gateway struct {
	*Data
	auth   *auth.Server
	eph    store.Ephemeral
	audit  *auditlog.Writer
	prober *ops.Prober
	echo   *echo.Echo
	fhir   *fhir.Server
}

// Open assembles the gateway cfg describes: it opens the data side (OpenData),
// loads (on first start generates) the signing keys and the revocation set,
// starts the audit writer and builds the routes. The caller closes it.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Gateway, error) {
	d, err := OpenData(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	g := &Gateway{Data: d}
	if err := g.build(ctx); err != nil {
		_ = g.Close()
		return nil, err
	}
	return g, nil
}

// build makes the HTTP side: authorization server, audit writer, rate
// limit, routes.
func (g *Gateway) build(ctx context.Context) error {
	var err error
	if g.auth, err = g.openAuth(ctx); err != nil {
		return err
	}
	as, ok := g.store.(store.AuditStore)
	if !ok {
		// The FHIR API is not served unaudited.
		return errors.New("the store does not keep an audit trail")
	}
	g.audit = auditlog.New(as, auditlog.Options{Logger: g.log})
	var auditor fhir.Auditor = g.audit
	if benchonly.IsUnaudited(ctx) {
		// Only the benchmark harness sets this (internal/benchonly): its
		// baseline for what auditing costs a read. No flag or setting of
		// the gateway reaches it.
		g.log.Warn("benchmark: the FHIR API is served without an audit trail")
		auditor = fhir.AuditorFunc(func(context.Context, fhir.Event) {})
	}
	rl, err := g.rateLimit()
	if err != nil {
		return err
	}
	db := ops.Dependency{Name: "database", Ping: g.store.Ping, Required: true}
	if wl, ok := g.store.(store.WriterLagger); ok {
		db.Lag = wl.WriterLag
	}
	deps := []ops.Dependency{db}
	if g.redis != nil {
		deps = append(deps, ops.Dependency{Name: "redis", Ping: g.redis.Ping})
	}
	// The audit trail fails closed (docs/design/security.md AUD-ARCH-2):
	// while it refuses audited requests the replica is not ready, so a load
	// balancer sends the reads elsewhere and /readyz says why.
	deps = append(deps, ops.Dependency{Name: "audit", Required: true,
		Ping: func(context.Context) error { return g.audit.Admit() }})
	g.prober = ops.NewProber(deps, g.metrics, g.log)

	ec := echo.New()
	ec.HideBanner, ec.HidePort = true, true
	ec.Logger.SetOutput(discard{})
	// The request head's size limits hold on every path, before any route
	// (docs/design/security.md LIM-1).
	ec.Use(g.metrics.Middleware, fhir.RequestLimits)
	// One error handler for what no route rendered, chosen by the path's
	// family: OAuth error JSON under /auth, an OperationOutcome everywhere
	// else (docs/design/security.md LIM-3, PRIV-9). fhir.Register keeps its
	// own branch for /fhir.
	ec.HTTPErrorHandler = func(err error, c echo.Context) {
		if authPath(c.Request().URL.Path) {
			g.auth.RenderError(c, err)
			return
		}
		fhir.RenderError(c, err)
	}
	// Bulk Data export reads the durable store itself, never the read
	// cache: its snapshots are by time, and its jobs are shared state.
	var export *fhir.ExportOptions
	if es, ok := g.store.(fhir.ExportStore); ok {
		export = &fhir.ExportOptions{Store: es, MaxActive: g.cfg.ExportMaxJobs,
			FileSize: g.cfg.ExportFileSize, Expiry: g.cfg.ExportExpiry}
	}
	// The referral write path writes through the read cache, so every
	// replica's cache drops what it changed (docs/referrals.md).
	clients, ok := g.store.(fhir.Clients)
	if !ok {
		return errors.New("the store does not keep the client registry")
	}
	fs, err := fhir.New(fhir.Options{
		Export:               export,
		Store:                g.reads,
		Writer:               g.reads,
		Clients:              clients,
		Base:                 g.cfg.FHIRBase(),
		IdentifierSystemBase: g.cfg.IdentifierSystemBase,
		Verifier:             g.auth.Tokens(),
		RateLimit:            rl,
		CORS:                 g.auth.CORS(),
		Auditor:              auditor,
		Logger:               g.log,
		Version:              g.cfg.Version,
		// docs/access.md: the payer view's setting.
		Disclosure:    auth.DisclosurePolicy{PayerCoverageOnly: g.cfg.PayerCoverageOnly},
		Documentation: course.Documentation(g.cfg.BaseURL),
	})
	if err != nil {
		return fmt.Errorf("fhir server: %w", err)
	}
	g.auth.Register(ec, fhir.AccessLog(g.log))
	fs.Register(ec)
	g.fhir = fs
	jobs, _ := g.store.(store.JobStore) // nil: every batch is answered synchronously
	if err := g.courseViewer(ctx, ec); err != nil {
		return err
	}
	ingestapi.Register(ec.Group("/internal/v1"), g.ingest, clinic.Schema(),
		ingestapi.Options{Verifier: g.auth.Tokens(), RateLimit: rl, Logger: g.log, Limits: g.cfg.IngestLimits,
			Jobs: jobs, AsyncRecords: g.cfg.IngestAsyncRecords, BaseURL: g.cfg.BaseURL})
	ops.Register(ec, g.prober, g.metrics, g.cfg.MetricsAddr != "")
	g.echo = ec
	return nil
}

// courseViewer registers the course viewer as a client (at every start:
// its redirect and launch URLs follow the base URL) and mounts it at
// /apps/course/ (docs/design/security.md VIEW-1).
func (g *Gateway) courseViewer(ctx context.Context, ec *echo.Echo) error {
	cl, err := course.Client(g.cfg.BaseURL, time.Now())
	if err != nil {
		return fmt.Errorf("course viewer client: %w", err)
	}
	if err := g.RegisterClient(ctx, cl); err != nil {
		return fmt.Errorf("course viewer client: %w", err)
	}
	app, err := course.New(course.Options{
		BaseURL:        g.cfg.BaseURL,
		Gateway:        ec,
		Ephemeral:      g.eph,
		FrameAncestors: g.cfg.AppFrameAncestors,
		SecureCookies:  strings.HasPrefix(g.cfg.BaseURL, "https://"),
		Logger:         g.log,
	})
	if err != nil {
		return err
	}
	app.Register(ec, fhir.AccessLog(g.log))
	return nil
}

// Handler is the gateway's HTTP handler: /auth, /fhir, /internal/v1,
// /healthz, /readyz and (unless it has its own listener) /metrics.
func (g *Gateway) Handler() http.Handler { return g.echo }

// RegisterClient registers (or replaces) a client in the gateway's client
// registry, checked by auth.ValidateClient.
func (g *Gateway) RegisterClient(ctx context.Context, c store.Client) error {
	if err := auth.ValidateClient(c); err != nil {
		return err
	}
	as, ok := g.store.(store.AuthStore)
	if !ok {
		return errors.New("the store does not keep auth state")
	}
	return as.PutClient(ctx, c)
}

// RegisterUser registers (or replaces) a login, checked and hashed by
// auth.NewUser (as `ketabridge users add` does).
func (g *Gateway) RegisterUser(ctx context.Context, r auth.UserRegistration) error {
	u, err := auth.NewUser(r, time.Now())
	if err != nil {
		return err
	}
	as, ok := g.store.(store.AuthStore)
	if !ok {
		return errors.New("the store does not keep auth state")
	}
	return as.PutUser(ctx, u)
}

// Close flushes and stops the audit writer (queued AuditEvents are written
// while the store is still open), then closes the data side. Call it after
// Serve has returned, so no request records an event afterwards.
func (g *Gateway) Close() error {
	var errs []error
	if g.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), auditCloseTimeout)
		errs = append(errs, g.audit.Close(ctx))
		cancel()
	}
	return errors.Join(append(errs, g.Data.Close())...)
}

// openAuth loads (or on first start generates) the signing keys and the
// revocation set from the durable store and builds the authorization server.
func (g *Gateway) openAuth(ctx context.Context) (*auth.Server, error) {
	as, ok := g.store.(store.AuthStore)
	if !ok {
		return nil, errors.New("the store does not keep auth state")
	}
	clock := store.SystemClock{}
	sealer, err := g.keySealer()
	if err != nil {
		return nil, err
	}
	keys, err := auth.LoadSealedKeySet(ctx, as, clock, sealer)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	// One process keeps codes, launch ids, the jti replay set and throttling
	// in memory; replicas share them (and revocations) through Redis.
	var (
		eph  store.Ephemeral
		revs auth.Revocations
	)
	if g.redis != nil {
		eph = g.redis
		revs, err = auth.NewSharedRevocations(ctx, as, eph, clock)
	} else {
		eph = memory.NewEphemeral(clock)
		revs, err = auth.NewRevocations(ctx, as, clock)
	}
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	srv := auth.New(auth.Options{
		BaseURL:       g.cfg.BaseURL,
		Clients:       as,
		Users:         as,
		Grants:        as,
		Ephemeral:     eph,
		Keys:          keys,
		Patients:      fhir.NewPatientDirectory(g.store),
		Clock:         clock,
		Logger:        g.log,
		SecureCookies: strings.HasPrefix(g.cfg.BaseURL, "https://"),
		PartnerLogins: g.cfg.PartnerLogins,
		Records:       g.store,
		Disclosed: func(ctx context.Context, role auth.Role, org string) ([]string, error) {
			d, err := fhir.ReadDisclosure(ctx, g.store, auth.DisclosurePolicy{PayerCoverageOnly: g.cfg.PayerCoverageOnly}, role, org, clock.Now())
			if err != nil {
				return nil, err
			}
			ids := make([]string, 0, len(d.Patients))
			for id := range d.Patients {
				ids = append(ids, id)
			}
			return ids, nil
		},
	})
	srv.Tokens().SetRevocations(revs)
	g.eph = eph
	return srv, nil
}

// keySealer is the signing keys' encryption at rest, when configured. A
// shared database without it is allowed but logged: whoever reads the
// database could mint tokens.
func (g *Gateway) keySealer() (*auth.KeySealer, error) {
	if g.cfg.KeyEncryptionKey == nil {
		if g.backend == "postgres" {
			g.log.Warn("signing keys are stored in the database unencrypted; set --key-encryption-key-file on every replica")
		}
		return nil, nil
	}
	return auth.NewKeySealer(g.cfg.KeyEncryptionKey)
}

// rateLimit is the per-client rate limit (nil when RateLimit is 0): shared
// buckets in Redis with a local fallback, or local buckets.
func (g *Gateway) rateLimit() (*fhir.RateLimit, error) {
	if g.cfg.RateLimit == 0 {
		return nil, nil
	}
	local := memory.NewLimiter()
	rl := &fhir.RateLimit{Limiter: local, Rate: g.cfg.RateLimit, Burst: g.cfg.RateBurst}
	if g.redis != nil {
		rl.Limiter, rl.Fallback = g.redis.Limiter(), local
		rl.OnError = func() { g.metrics.DependencyError("redis") }
		// Leases of what the client earns in fhir.LeaseTTL (50 ms), at most
		// fhir.MaxLease tokens and a quarter of the burst: one Redis round
		// trip per lease instead of per request for busy clients; the
		// shared bucket still counts every token, so a client is served at
		// most Burst + Rate x (T + LeaseTTL) in any T across all replicas
		// (docs/design/security.md PRIV-21).
		rl.Lease = max(1, min(fhir.MaxLease, int(g.cfg.RateLimit*fhir.LeaseTTL.Seconds()), g.cfg.RateBurst/4))
	}
	if err := rl.Validate(); err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	return rl, nil
}

// authPath reports whether p is /auth or below it, repeated slashes
// collapsed.
func authPath(p string) bool {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p == "/auth" || strings.HasPrefix(p, "/auth/")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// mkdataDir creates the data directory, readable by its owner only.
func mkdataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create data directory %s: %v", dir, err)
	}
	return nil
}
