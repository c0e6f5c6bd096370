package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/ingestapi"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// Server timeouts.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 5 * time.Minute // large ingest batches
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 15 * time.Second
	readyzTimeout     = 2 * time.Second
	probeInterval     = 5 * time.Second
	// externalWriteInterval is how often an embedded gateway with a cache
	// checks whether another process wrote its SQLite file.
	externalWriteInterval = 250 * time.Millisecond
)

func cmdServe(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("serve")
	demo := cf.fs.Bool("demo", false, "ingest 12 synthetic patients at start (idempotent)")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	if cf.fs.NArg() > 0 {
		return &usageError{msg: "serve: unexpected argument " + fmt.Sprintf("%q", cf.fs.Arg(0))}
	}
	log := newLogger(e.stderr, cfg.LogLevel)
	return serve(ctx, cfg, *demo, log, e)
}

// serve runs the gateway until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, cfg Config, demo bool, log *slog.Logger, e env) error {
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := a.Close(); err != nil {
			log.Error("closing the audit writer and the store", "err", err)
		}
	}()
	if err := a.storeDefinitions(ctx); err != nil {
		return err
	}
	if demo {
		if err := a.loadDemo(ctx); err != nil {
			return err
		}
	}
	if _, err := a.openAuth(ctx); err != nil {
		return err
	}
	if demo {
		if err := a.registerDemo(ctx, e.stdout); err != nil {
			return err
		}
	}

	ec, err := a.newEcho(log)
	if err != nil {
		return err
	}
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go a.prober.run(pctx, probeInterval)
	if watch := a.externalWriteWatcher(pctx, externalWriteInterval); watch != nil {
		go watch()
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("cannot listen on %s: %v", cfg.MetricsAddr, err)}
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("cannot listen on %s: %v", cfg.Addr, err)}
	}
	srv := &http.Server{
		Handler:           ec,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return &exitError{code: 1, msg: "cannot load the TLS certificate: " + err.Error()}
		}
		// docs/design/security.md NET-2: TLS 1.2 or later; 1.0 and 1.1
		// handshakes are refused.
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		scheme = "https"
	}
	served := make(chan error, 1)
	go func() {
		if scheme == "https" {
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		served <- srv.Serve(ln)
	}()

	addr := ln.Addr().String()
	log.Info("listening", "addr", addr, "scheme", scheme, "fhir_base", cfg.FHIRBase(), "version", versionString())
	fmt.Fprintf(e.stdout, "KetaBridge %s listening on %s\n", versionString(), addr)
	fmt.Fprintf(e.stdout, "FHIR base: %s   (internal ingest API: %s/internal/v1/records)\n", cfg.FHIRBase(), cfg.BaseURL)
	if scheme == "http" {
		fmt.Fprintln(e.stdout, "Plain HTTP is for local use only: serve with --tls-cert/--tls-key, or put TLS in front, for anything else.")
		log.Warn("serving plain HTTP: for local use only")
	}
	if e.ready != nil {
		e.ready(addr)
	}

	select {
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete; closing connections", "err", err)
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("server", "err", err)
	}
	log.Info("stopped")
	return nil
}

// newEcho builds the HTTP routes: the FHIR API (audited: its AuditEvents go
// through a.audit, which a.Close flushes), the internal ingest API, /healthz
// and /readyz.
func (a *app) newEcho(log *slog.Logger) (*echo.Echo, error) {
	ec := echo.New()
	ec.HideBanner = true
	ec.HidePort = true
	ec.Logger.SetOutput(discard{})
	a.observe(log)
	ec.Use(a.metrics.middleware)

	as, err := a.openAuth(context.Background())
	if err != nil {
		return nil, err
	}
	aud, err := a.openAudit(log)
	if err != nil {
		return nil, err
	}
	rl, err := a.rateLimit()
	if err != nil {
		return nil, err
	}
	fs, err := fhir.New(fhir.Options{
		Store:     a.reads,
		Base:      a.cfg.FHIRBase(),
		Verifier:  as.tokens,
		RateLimit: rl,
		CORS:      as.server.CORS(),
		Auditor:   aud,
		Logger:    log,
		Version:   versionString(),
	})
	if err != nil {
		return nil, fmt.Errorf("fhir server: %w", err)
	}
	// The authorization server first: fhir.Register wraps the error handler
	// in place at that moment for everything outside /fhir.
	as.server.Register(ec, fhir.AccessLog(log))
	fs.Register(ec)

	ingestapi.Register(ec.Group("/internal/v1"), a.ingest, clinic.Schema(),
		ingestapi.Options{Verifier: as.tokens, RateLimit: rl, Logger: log})

	// Liveness: the process answers (always 200 while it runs).
	ec.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	// Readiness: each dependency answers a ping (see prober.readyz).
	ec.GET("/readyz", a.prober.readyz)
	if a.cfg.MetricsAddr == "" {
		ec.GET("/metrics", loopbackOnly(a.metrics.handler()))
	}
	return ec, nil
}

// externalWriteWatcher drops the whole read cache when the SQLite file has
// new resource versions (sqlite.Store.ChangeVersion): another process (such
// as `ketabridge import`) may have written them, which the cache cannot
// see, so such writes show within one interval. Writes through this
// process's ingest invalidate precisely and at once anyway; they also trip
// this check, which only costs hits.
//
// The baseline is read here, before the gateway serves (and so before any
// entry is cached), so no write can fall between it and the cache.
func (a *app) externalWriteWatcher(ctx context.Context, interval time.Duration) func() {
	sq, ok := a.store.(*sqlite.Store)
	cs, cok := a.reads.(*cached.Store)
	if !ok || !cok {
		return nil
	}
	last, err := sq.ChangeVersion(ctx)
	known := err == nil
	return func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			v, err := sq.ChangeVersion(ctx)
			if err != nil {
				continue
			}
			if !known || v != last {
				// Unknown baseline (the first read failed): drop to be safe.
				if err := cs.Invalidate(ctx); err != nil {
					a.log.Warn("cannot drop the read cache after a database change", "err", err)
					continue // try again on the next tick
				}
				a.log.Debug("the database changed: read cache dropped")
			}
			last, known = v, true
		}
	}
}

// rateLimit is the per-client rate limit (nil when --rate-limit is 0):
// shared buckets in Redis with a local fallback, or local buckets.
func (a *app) rateLimit() (*fhir.RateLimit, error) {
	if a.cfg.RateLimit == 0 {
		return nil, nil
	}
	local := memory.NewLimiter()
	rl := &fhir.RateLimit{Limiter: local, Rate: a.cfg.RateLimit, Burst: a.cfg.RateBurst}
	if a.redis != nil {
		rl.Limiter, rl.Fallback = a.redis.Limiter(), local
		rl.OnError = func() { a.metrics.depErr.WithLabelValues("redis").Inc() }
		// Leases of what the client earns in fhir.LeaseTTL (50 ms), at most
		// 32 tokens and a quarter of the burst: one Redis round trip per
		// lease instead of per request for busy clients; the shared bucket
		// still counts every token.
		rl.Lease = max(1, min(32, int(a.cfg.RateLimit*fhir.LeaseTTL.Seconds()), a.cfg.RateBurst/4))
	}
	if err := rl.Validate(); err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	return rl, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
