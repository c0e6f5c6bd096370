package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/ops"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
	"github.com/ketabridge/ketabridge/store/postgres"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// Data is the data side of a gateway: the store, Redis, the read cache over
// the store, the mapper and the ingest service, with the mapper's definition
// resources stored. `ketabridge import` uses it alone; Open builds the HTTP
// side on it.
type Data struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	// backend names the store for logs and /readyz: "sqlite" or "postgres".
	backend string
	// redis is the shared Redis (nil in the embedded mode): ephemeral auth
	// state, revocations, read cache and rate limits.
	redis *redisstore.Ephemeral
	// reads is the store the FHIR API reads and the ingest writes through:
	// the read cache over store (Redis, or in memory), or store itself when
	// there is no cache.
	reads   store.Store
	mapper  *mapping.Mapper
	ingest  *ingest.Service
	metrics *ops.Metrics
	// closer closes the referrals whose patient's consent for their
	// recipient no longer counts (docs/design/security.md RFL-6): after
	// every ingest that writes a Consent, and by Serve's periodic sweep.
	closer *fhir.ReferralCloser
	// bulkMu guards bulk and bulkPatients: while a bulk load runs
	// (BeginBulk) searches may fail, so the patients whose Consents the
	// ingest stores are closed for when it ends.
	bulkMu       sync.Mutex
	bulk         bool
	bulkPatients []string
}

// DurableStore is a durable backend: resources, auth state and the audit
// trail.
type DurableStore interface {
	store.Store
	store.AuthStore
	store.AuditStore
}

// storeTimeout bounds the Redis ping at start.
const storeTimeout = 2 * time.Second

// OpenStore opens the configured database: PostgreSQL when DatabaseURL is
// set, else the SQLite store in the data directory (created when missing).
func OpenStore(ctx context.Context, cfg Config) (DurableStore, error) {
	if cfg.DatabaseURL != "" {
		pg, err := postgres.Open(ctx, cfg.DatabaseURL, store.SystemClock{})
		if err != nil {
			// postgres.Open never echoes the URL (it may hold a password).
			return nil, fmt.Errorf("cannot open the PostgreSQL store (%s): %v", RedactURL(cfg.DatabaseURL), err)
		}
		return pg, nil
	}
	if err := mkdataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	sq, err := sqlite.Open(ctx, cfg.DBPath(), store.SystemClock{})
	if err != nil {
		return nil, fmt.Errorf("cannot open the SQLite store at %s: %v", cfg.DBPath(), err)
	}
	return sq, nil
}

// OpenData opens the configured store and Redis, puts the read cache in
// front, builds the mapper and the ingest pipeline and stores the mapper's
// definitions. The caller closes it.
func OpenData(ctx context.Context, cfg Config, log *slog.Logger) (*Data, error) {
	if err := mkdataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d := &Data{cfg: cfg, log: log, store: st, backend: "sqlite", metrics: ops.NewMetrics()}
	if cfg.DatabaseURL != "" {
		d.backend = "postgres"
	}
	if cfg.RedisURL != "" {
		r, err := redisstore.Connect(cfg.RedisURL, cfg.RedisPrefix)
		if err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("cannot use Redis (%s): %v", RedactURL(cfg.RedisURL), err)
		}
		d.redis = r
		pctx, cancel := context.WithTimeout(ctx, storeTimeout)
		if err := r.Ping(pctx); err != nil {
			// Start anyway: reads fall back to the store, shared auth state
			// fails closed, /readyz says Redis is down, and the client
			// reconnects by itself.
			log.Warn("Redis does not answer; starting degraded", "err", err)
		}
		cancel()
	}
	d.reads = d.cacheStore(st)
	d.mapper = mapping.New(mapping.Options{IdentifierSystemBase: cfg.IdentifierSystemBase, Organization: cfg.ClinicOrganization})
	d.closer = &fhir.ReferralCloser{Store: d.reads, Writer: d.reads,
		Policy: auth.DisclosurePolicy{PayerCoverageOnly: cfg.PayerCoverageOnly}}
	if as, ok := st.(store.AuditStore); ok {
		d.closer.Audit = as.AppendAudit
	}
	d.ingest = ingest.New(consentWatch{Store: d.reads, d: d}, d.mapper, search.Extract, store.SystemClock{})
	log.Info("store opened", "backend", d.backend, "redis", d.redis != nil)
	if err := d.storeDefinitions(ctx); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// Ingester is the ingest pipeline, writing through the read cache.
func (d *Data) Ingester() *ingest.Service { return d.ingest }

// BeginBulk starts a bulk load on the durable store when it has a bulk path
// (store.BulkWriter; docs/design/architecture.md PERF-SQLB-1): a large
// import (`ketabridge import --bulk`, the benchmark) runs its ingests
// between it and end, through Ingester as always. ok is false, and end does
// nothing, when the store has none (the ingests are then plain ones).
func (d *Data) BeginBulk(ctx context.Context) (end func(context.Context) error, ok bool, err error) {
	bw, ok := d.store.(store.BulkWriter)
	if !ok {
		return func(context.Context) error { return nil }, false, nil
	}
	storeEnd, err := bw.BeginBulk(ctx)
	if err != nil {
		return nil, false, err
	}
	d.bulkMu.Lock()
	d.bulk = true
	d.bulkMu.Unlock()
	return func(ctx context.Context) error {
		err := storeEnd(ctx)
		d.bulkMu.Lock()
		patients := d.bulkPatients
		d.bulk, d.bulkPatients = false, nil
		d.bulkMu.Unlock()
		// The referrals the load's Consents close (RFL-6), now that searches
		// answer; a failure is left to the sweep, as after any ingest.
		if len(patients) > 0 && err == nil {
			if _, cerr := d.closer.Close(ctx, patients, time.Now()); cerr != nil {
				d.log.Warn("referrals: closing on consent withdrawal failed; the sweep retries", "err", cerr)
			}
		}
		return err
	}, true, nil
}

// consentWatch is the ingest pipeline's writer: it writes through the
// read cache and, after a write that stored a new version of a Consent,
// closes the referral Tasks of that patient whose recipient's consent no
// longer counts (docs/design/security.md RFL-6). A failure to close is
// logged and left to the next sweep: the Consent is stored, and the
// referral package already reads it (RFL-5), so nothing stays readable.
type consentWatch struct {
	store.Store
	d *Data
}

// Apply implements ingest.Writer.
func (w consentWatch) Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error) {
	results, err := w.Store.Apply(ctx, records)
	if err != nil {
		return results, err
	}
	var patients []string
	for _, res := range results {
		for _, r := range res.Resources {
			if r.Type != "Consent" || r.Outcome == store.Unchanged {
				continue
			}
			if p := consentPatient(records, r.ID); p != "" && !slices.Contains(patients, p) {
				patients = append(patients, p)
			}
		}
	}
	if len(patients) > 0 {
		w.d.bulkMu.Lock()
		bulk := w.d.bulk
		if bulk {
			for _, p := range patients {
				if !slices.Contains(w.d.bulkPatients, p) {
					w.d.bulkPatients = append(w.d.bulkPatients, p)
				}
			}
		}
		w.d.bulkMu.Unlock()
		if bulk {
			return results, nil // closed when the bulk load ends (BeginBulk)
		}
		if _, cerr := w.d.closer.Close(ctx, patients, time.Now()); cerr != nil {
			w.d.log.Warn("referrals: closing on consent withdrawal failed; the sweep retries", "err", cerr)
		}
	}
	return results, nil
}

// consentPatient is the compartment of the Consent id written by records.
func consentPatient(records []store.RecordWrite, id string) string {
	for _, rec := range records {
		for _, rw := range rec.Resources {
			if rw.Type == "Consent" && rw.ID == id {
				return rw.Patient
			}
		}
	}
	return ""
}

// Store is the durable store itself, under the read cache: for tools that
// read it whole (the benchmark's data set).
func (d *Data) Store() store.Store { return d.store }

// Close closes the store and Redis.
func (d *Data) Close() error {
	errs := []error{d.store.Close()}
	if d.redis != nil {
		errs = append(errs, d.redis.Close())
	}
	return errors.Join(errs...)
}

// cacheStore puts the read cache in front of st: Redis when configured
// (shared by replicas, invalidated across them, with a near cache of
// CacheMB in each), else, for SQLite, an in-memory cache of CacheMB, else
// none. PostgreSQL without Redis gets no
// cache: other replicas' writes could not invalidate a local one.
func (d *Data) cacheStore(st store.Store) store.Store {
	var c store.Cache
	switch {
	case !d.cfg.ReadCache:
		return st
	case d.redis != nil:
		c = d.redis.Cache()
	case d.cfg.CacheMB > 0 && d.backend == "sqlite" && d.cfg.CacheOffHeap:
		c = memory.NewOffHeapCache(int64(d.cfg.CacheMB) << 20) // docs/design/security.md PERF-ST-9
	case d.cfg.CacheMB > 0 && d.backend == "sqlite":
		c = memory.NewCache(int64(d.cfg.CacheMB) << 20)
	default:
		return st
	}
	var onErr func()
	if d.redis != nil {
		onErr = func() { d.metrics.DependencyError("redis") }
	}
	hit, miss, fail := d.metrics.CacheCounters(cached.Ops, onErr)
	opts := cached.Options{Observer: cached.Observer{Hit: hit, Miss: miss, Error: fail}}
	if d.redis != nil {
		// Replicas keep a near cache of CacheMB in front of Redis; a hit
		// reads the stamps from Redis unless the replica's watch vouches
		// for them (docs/design/security.md CACHE-1, CACHE-3).
		opts.NearBytes = int64(d.cfg.CacheMB) << 20
	}
	return cached.New(st, c, opts)
}

// storeDefinitions writes the mapper's definition resources (one synthetic
// record of kind "definitions"; unchanged definitions are a no-op). It
// writes to the store directly and then invalidates the read cache when
// they changed; when Redis is down at start the gateway still starts (with
// the cache dirty: bypassed here, and the epoch bumped for every replica
// as soon as Redis answers).
func (d *Data) storeDefinitions(ctx context.Context) error {
	direct := ingest.New(d.store, d.mapper, search.Extract, store.SystemClock{})
	res, err := direct.StoreDefinitions(ctx)
	if err != nil {
		return err
	}
	if cs, ok := d.reads.(*cached.Store); ok && res.Outcome != store.Unchanged {
		if err := cs.Invalidate(ctx); err != nil {
			d.log.Warn("definitions changed but the read cache cannot be invalidated yet; bypassing it until Redis answers", "err", err)
		}
	}
	d.log.Info("definitions stored", "outcome", string(res.Outcome), "resources", len(res.Resources))
	return nil
}
