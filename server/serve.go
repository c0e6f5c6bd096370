package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// Server timeouts and intervals.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 5 * time.Minute // large ingest batches
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 15 * time.Second
	probeInterval     = 5 * time.Second
	// externalWriteInterval is how often an embedded gateway with a cache
	// checks whether another process wrote its SQLite file.
	externalWriteInterval = 250 * time.Millisecond
)

// maxHeaderBytes is net/http's cap on a request head, the last resort behind
// fhir.RequestLimits (docs/design/security.md LIM-1): a head between those
// limits and this one is answered 414 or 431 with an OperationOutcome (or
// OAuth error JSON under /auth); past this one Go answers a plain-text 431
// before any handler runs. It bounds the memory one connection's head may
// take while ReadHeaderTimeout runs.
const maxHeaderBytes = 2 << 20

// Serve serves the gateway on ln until ctx is done, then shuts down
// gracefully (in-flight requests get shutdownTimeout). It speaks HTTPS when
// the configuration names a certificate (TLS 1.2 or later), and runs the
// dependency prober, the external-write watcher and, when configured, the
// separate /metrics listener meanwhile. It returns nil after a shutdown
// ctx asked for, else why the server stopped.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go g.prober.Run(pctx, probeInterval)
	go g.fhir.RunExports(pctx)
	go g.sweepReferrals(pctx, referralSweepInterval)
	if watch := g.externalWriteWatcher(pctx, externalWriteInterval); watch != nil {
		go watch()
	}
	if g.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", g.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("cannot listen on %s: %v", g.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.metrics.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
		g.log.Info("metrics listening", "addr", mln.Addr().String())
	}
	srv := &http.Server{
		Handler:           g.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if g.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(g.cfg.TLSCert, g.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("cannot load the TLS certificate: %v", err)
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
	g.log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "fhir_base", g.cfg.FHIRBase(), "version", g.cfg.Version)
	if scheme == "http" {
		g.log.Warn("serving plain HTTP: for local use only")
	}

	select {
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	g.log.Info("shutting down", "drain_timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.log.Warn("graceful shutdown incomplete; closing connections", "err", err)
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Warn("server", "err", err)
	}
	g.log.Info("stopped")
	return nil
}

// referralSweepInterval is how often a replica closes the referrals whose
// consent stopped counting without an ingest (a period that ended):
// docs/referrals.md. The package itself closes at once (RFL-5); the sweep
// is for the Task.
const referralSweepInterval = 5 * time.Minute

// sweepReferrals runs the referral closer's sweep every interval
// (docs/design/security.md RFL-6). Several replicas may sweep at once: a
// close expects the version it read, so each Task is closed once.
func (g *Gateway) sweepReferrals(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := g.closer.Sweep(ctx, time.Now()); err != nil {
				if ctx.Err() == nil {
					g.log.Warn("referrals: sweep failed", "err", err)
				}
			} else if n > 0 {
				g.log.Info("referrals: closed on consent withdrawal", "tasks", n)
			}
		}
	}
}

// externalWriteWatcher drops the whole read cache when another process
// (such as `ketabridge import`) has written new resource versions to the
// SQLite file (sqlite.Store.ForeignChangeVersion), which the cache cannot
// see, so such writes show within one interval. Writes through this
// process invalidate precisely and at once (CACHE-1) and do not move the
// number it watches, so they no longer drop every other answer with them
// (docs/design/security.md CACHE-6).
//
// The baseline is read here, before the gateway serves (and so before any
// entry is cached), so no write can fall between it and the cache.
func (g *Gateway) externalWriteWatcher(ctx context.Context, interval time.Duration) func() {
	sq, ok := g.store.(*sqlite.Store)
	cs, cok := g.reads.(*cached.Store)
	if !ok || !cok {
		return nil
	}
	w := newForeignWrites(ctx, sq, cs, g.log)
	return func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.check(ctx)
		}
	}
}

// foreignWrites is externalWriteWatcher's state: the foreign change version
// last seen, once known.
type foreignWrites struct {
	sq    *sqlite.Store
	cs    *cached.Store
	log   *slog.Logger
	last  int64
	known bool
}

func newForeignWrites(ctx context.Context, sq *sqlite.Store, cs *cached.Store, log *slog.Logger) *foreignWrites {
	w := &foreignWrites{sq: sq, cs: cs, log: log}
	var err error
	w.last, err = sq.ForeignChangeVersion(ctx)
	w.known = err == nil
	return w
}

// check drops the read cache when another process wrote since the last
// check (or the baseline is unknown), and reports whether it did.
func (w *foreignWrites) check(ctx context.Context) (dropped bool) {
	v, err := w.sq.ForeignChangeVersion(ctx)
	if err != nil {
		return false
	}
	if !w.known || v != w.last {
		// Unknown baseline (the first read failed): drop to be safe.
		if err := w.cs.Invalidate(ctx); err != nil {
			w.log.Warn("cannot drop the read cache after a database change", "err", err)
			return false // try again on the next tick
		}
		w.log.Debug("another process wrote the database: read cache dropped")
		dropped = true
	}
	w.last, w.known = v, true
	return dropped
}
