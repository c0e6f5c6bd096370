package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ketabridge/ketabridge/fhir/auditlog"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/postgres"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// app is the wired core every data subcommand uses: the store, the mapper
// and the ingest service.
type app struct {
	cfg    Config
	log    *slog.Logger
	store  store.Store
	mapper *mapping.Mapper
	ingest *ingest.Service
	// auth is built on first use by openAuth (serve and the tools that
	// drive the API in-process).
	auth *authState
	// audit writes the FHIR API's AuditEvents to the store; started by
	// openAudit with the API, flushed and stopped by Close.
	audit *auditlog.Writer
	// redis is the shared Redis (nil in the embedded mode): ephemeral auth
	// state, revocations, read cache and rate limits.
	redis *redisstore.Ephemeral
	// backend names the store for logs and /readyz: "sqlite" or "postgres".
	backend string
	// reads is the store the FHIR API reads and the ingest writes through:
	// the read cache over store (Redis, or in memory), or store itself when
	// there is no cache.
	reads store.Store
	// metrics is built with the app; prober by observe (serve and bench).
	metrics *metrics
	prober  *prober
}

// cacheStore puts the read cache in front of st: Redis when configured
// (shared by replicas, invalidated across them), else, for SQLite, an
// in-memory cache of --cache-mb, else none. PostgreSQL without Redis gets
// no cache: other replicas' writes could not invalidate a local one.
func (a *app) cacheStore(st store.Store) store.Store {
	var c store.Cache
	switch {
	case !a.cfg.ReadCache:
		return st
	case a.redis != nil:
		c = a.redis.Cache()
	case a.cfg.CacheMB > 0 && a.backend == "sqlite":
		c = memory.NewCache(int64(a.cfg.CacheMB) << 20)
	default:
		return st
	}
	// The counters are resolved once: Hit and Miss run on every read.
	m := a.metrics
	hits, misses, errs := map[string]prometheus.Counter{}, map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
	for _, op := range cached.Ops {
		hits[op] = m.cache.WithLabelValues(op, "hit")
		misses[op] = m.cache.WithLabelValues(op, "miss")
		errs[op] = m.cacheErr.WithLabelValues(op)
	}
	redisErr := m.depErr.WithLabelValues("redis")
	return cached.New(st, c, cached.Options{Observer: cached.Observer{
		Hit:  func(op string) { incOp(hits, op) },
		Miss: func(op string) { incOp(misses, op) },
		Error: func(op string) {
			incOp(errs, op)
			if a.redis != nil {
				redisErr.Inc()
			}
		},
	}})
}

// incOp increments the counter of op (an op outside cached.Ops counts
// nowhere rather than panicking).
func incOp(cs map[string]prometheus.Counter, op string) {
	if c, ok := cs[op]; ok {
		c.Inc()
	}
}

// observe builds (once) the metrics registry and the dependency prober.
func (a *app) observe(log *slog.Logger) {
	if a.prober != nil {
		return
	}
	deps := []dependency{{name: "database", ping: a.store.Ping, required: true}}
	if a.redis != nil {
		deps = append(deps, dependency{name: "redis", ping: a.redis.Ping})
	}
	a.prober = newProber(deps, a.metrics, log)
}

// openApp opens the configured store and builds the ingest pipeline on it.
// The caller closes the app.
func openApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot create data directory %s: %v", cfg.DataDir, err)}
	}
	var st store.Store
	backend := "sqlite"
	if cfg.DatabaseURL != "" {
		backend = "postgres"
		pg, err := postgres.Open(ctx, cfg.DatabaseURL, store.SystemClock{})
		if err != nil {
			// postgres.Open never echoes the URL (it may hold a password).
			return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot open the PostgreSQL store (%s): %v", redactURL(cfg.DatabaseURL), err)}
		}
		st = pg
	} else {
		sq, err := sqlite.Open(ctx, cfg.DBPath(), store.SystemClock{})
		if err != nil {
			return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot open the SQLite store at %s: %v", cfg.DBPath(), err)}
		}
		st = sq
	}
	a := &app{cfg: cfg, log: log, store: st, backend: backend}
	if cfg.RedisURL != "" {
		r, err := redisstore.Connect(cfg.RedisURL, cfg.RedisPrefix)
		if err != nil {
			_ = st.Close()
			return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot use Redis (%s): %v", redactURL(cfg.RedisURL), err)}
		}
		a.redis = r
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := r.Ping(pctx); err != nil {
			// Start anyway: reads fall back to the store, shared auth state
			// fails closed, /readyz says Redis is down, and the client
			// reconnects by itself.
			log.Warn("Redis does not answer; starting degraded", "err", err)
		}
		cancel()
	}
	a.metrics = newMetrics()
	a.reads = a.cacheStore(st)
	a.mapper = mapping.New(mapping.Options{Canonical: cfg.FHIRBase()})
	a.ingest = ingest.New(a.reads, a.mapper, search.Extract, store.SystemClock{})
	log.Info("store opened", "backend", backend, "redis", a.redis != nil)
	return a, nil
}

// auditCloseTimeout bounds how long Close waits for queued AuditEvents to
// be written before it closes the store.
const auditCloseTimeout = 10 * time.Second

// openAudit starts (once) the audit writer over the store. A store without
// an audit trail is an error: the FHIR API is not served unaudited.
func (a *app) openAudit(log *slog.Logger) (*auditlog.Writer, error) {
	if a.audit != nil {
		return a.audit, nil
	}
	as, ok := a.store.(store.AuditStore)
	if !ok {
		return nil, errors.New("the store does not keep an audit trail")
	}
	a.audit = auditlog.New(as, auditlog.Options{Logger: log})
	return a.audit, nil
}

// Close flushes and stops the audit writer (queued AuditEvents are written
// while the store is still open), then closes the store. Call it after the
// HTTP server has stopped, so no request records an event afterwards.
func (a *app) Close() error {
	var errs []error
	if a.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), auditCloseTimeout)
		errs = append(errs, a.audit.Close(ctx))
		cancel()
	}
	errs = append(errs, a.store.Close())
	if a.redis != nil {
		errs = append(errs, a.redis.Close())
	}
	return errors.Join(errs...)
}

// storeDefinitions writes the mapper's definition resources (one synthetic
// record of kind "definitions"; unchanged definitions are a no-op). It
// writes to the store directly and then invalidates the read cache when
// they changed; when Redis is down at start the gateway still starts (with
// the cache dirty: bypassed here, and the epoch bumped for every replica
// as soon as Redis answers).
func (a *app) storeDefinitions(ctx context.Context) error {
	direct := ingest.New(a.store, a.mapper, search.Extract, store.SystemClock{})
	res, err := direct.StoreDefinitions(ctx)
	if err != nil {
		return err
	}
	if cs, ok := a.reads.(*cached.Store); ok && res.Outcome != store.Unchanged {
		if err := cs.Invalidate(ctx); err != nil {
			a.log.Warn("definitions changed but the read cache cannot be invalidated yet; bypassing it until Redis answers", "err", err)
		}
	}
	a.log.Info("definitions stored", "outcome", string(res.Outcome), "resources", len(res.Resources))
	return nil
}

// demoPatients and demoSeed define the --demo data set.
const (
	demoPatients = 12
	demoSeed     = 1
)

// demoStart is the fixed first day of the demo data, so re-running --demo
// produces identical records (all unchanged).
var demoStart = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

// synthRecords generates synthetic records and splits them into records.
func synthRecords(patients int, seed int64, start time.Time) ([]json.RawMessage, error) {
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: patients, Seed: seed, Start: start}); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return splitLines(buf.Bytes()), nil
}

// splitLines splits NDJSON into non-blank lines (no JSON check: a broken
// line is rejected as a record with its own error).
func splitLines(b []byte) []json.RawMessage {
	var out []json.RawMessage
	for len(b) > 0 {
		var l []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			l, b = b, nil
		}
		if l = bytes.TrimSpace(l); len(l) > 0 {
			out = append(out, json.RawMessage(l))
		}
	}
	return out
}

// loadDemo ingests the demo data set once (idempotent: a second run is all
// unchanged).
func (a *app) loadDemo(ctx context.Context) error {
	raw, err := synthRecords(demoPatients, demoSeed, demoStart)
	if err != nil {
		return err
	}
	_, sum, err := a.ingest.Ingest(ctx, raw)
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	a.log.Info("demo data ingested", "records", len(raw), "created", sum.Created, "updated", sum.Updated,
		"unchanged", sum.Unchanged, "rejected", sum.Rejected, "resources", sum.Resources)
	if sum.Rejected > 0 {
		return fmt.Errorf("demo data: %d synthetic records were rejected", sum.Rejected)
	}
	return nil
}
