package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store/postgres"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
)

// Compare-mode defaults: fewer patients than the 1M-resource run, so the
// PostgreSQL ingest of each variant stays within a minute or two.
const (
	comparePatients = 200
	// compareCacheMB is the in-memory cache of the "memory cache"
	// variant, and the near cache of the "redis cache" one.
	compareCacheMB = 64
)

// compareScenarios are the scenarios compare mode runs per variant.
var compareScenarios = []string{"read-hot", "read-uniform", "search", writeScenario, "limit"}

// variantResult is one store configuration of a comparison.
type variantResult struct {
	Name    string   `json:"name"`
	Results *results `json:"results"`
}

// comparison is compare.json.
type comparison struct {
	Machine  machine         `json:"machine"`
	Patients int             `json:"patients"`
	Variants []variantResult `json:"variants"`
	// CachedOverUncachedPG is, per scenario, requests/s with the Redis read
	// cache over requests/s without it, both on PostgreSQL with Redis for
	// the shared auth state (design target >= 3).
	CachedOverUncachedPG map[string]float64 `json:"cached_over_uncached_postgres,omitempty"`
	Skipped              string             `json:"skipped,omitempty"`
}

// Compare runs the compare scenarios on each store configuration: SQLite
// uncached, SQLite with the in-memory cache, and, when cfg names PostgreSQL
// and Redis that answer, PostgreSQL uncached and PostgreSQL with the Redis
// cache. Each PostgreSQL variant runs in a fresh schema and each Redis one
// under a fresh key prefix, removed afterwards: the servers named are used,
// never their existing data. It prints the table and writes compare.json.
func Compare(ctx context.Context, cfg server.Config, p Params, stdout, stderr io.Writer) error {
	if p.Patients == DefaultPatients {
		p.Patients = comparePatients
	}
	if p.Small {
		p.Patients = min(p.Patients, SmallPatients)
	}
	p.Only = compareScenarios
	cmp := comparison{Machine: machineInfo(), Patients: p.Patients}
	variants, skipped := compareVariants(ctx, cfg)
	if skipped != "" {
		cmp.Skipped = "PostgreSQL and Redis variants: " + skipped
		fmt.Fprintln(stderr, "bench: skipping the", cmp.Skipped)
	}
	for _, v := range variants {
		fmt.Fprintf(stderr, "bench: --- %s ---\n", v.name)
		vcfg, cleanup, err := freshNamespace(ctx, v.cfg, "bench")
		if err != nil {
			return fmt.Errorf("bench: %s: %w", v.name, err)
		}
		vp := p
		vp.store = v.name
		if !v.cfg.ReadCache && (v.cfg.RedisURL == "" || v.cfg.DatabaseURL == "") {
			// The export reads the durable store, never a cache: measured
			// once per store, SQLite and PostgreSQL.
			vp.Only = append(slices.Clip(vp.Only), exportName)
		}
		res, err := run(ctx, vcfg, vp, stderr)
		cleanup()
		if err != nil {
			return fmt.Errorf("bench: %s: %w", v.name, err)
		}
		cmp.Variants = append(cmp.Variants, variantResult{Name: v.name, Results: res})
	}
	for _, sc := range []string{"read-hot", "read-uniform", "search"} {
		pg, cached := cmp.rps("postgres + redis, no read cache", sc), cmp.rps("postgres + redis cache", sc)
		if pg > 0 && cached > 0 {
			if cmp.CachedOverUncachedPG == nil {
				cmp.CachedOverUncachedPG = map[string]float64{}
			}
			cmp.CachedOverUncachedPG[sc] = round3(cached / pg)
		}
	}

	printComparison(stdout, &cmp)
	b, err := json.MarshalIndent(&cmp, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(p.Out, "compare.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	if p.Docs != "" {
		if err := appendCompareDocs(p.Docs, &cmp); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "appended the comparison to %s\n", p.Docs)
	}
	return nil
}

// variant is one store configuration of a comparison.
type variant struct {
	name string
	cfg  server.Config
}

// compareVariants lists the store configurations to compare, and why the
// PostgreSQL and Redis ones are left out ("" when they are not).
func compareVariants(ctx context.Context, cfg server.Config) ([]variant, string) {
	base := cfg
	base.DatabaseURL, base.RedisURL, base.CacheMB, base.ReadCache = "", "", 0, false
	withMem := base
	withMem.CacheMB, withMem.ReadCache = compareCacheMB, true
	variants := []variant{{"sqlite", base}, {fmt.Sprintf("sqlite + memory cache (%d MiB)", compareCacheMB), withMem}}
	if why := serversDown(ctx, cfg); why != "" {
		return variants, why
	}
	pg := base
	pg.DatabaseURL = cfg.DatabaseURL
	pgRedis := pg
	pgRedis.RedisURL = cfg.RedisURL
	pgCached := pgRedis
	// The near cache in front of Redis, as a replica runs it (--cache-mb,
	// docs/deploy.md), of the SQLite variant's size: without it (CacheMB
	// was 0 here until 2026-12-06) every read paid a Redis script call.
	pgCached.ReadCache, pgCached.CacheMB = true, compareCacheMB
	// The fair pair for the cache: both share auth state, revocations and
	// rate limits through Redis, one with the read cache on.
	return append(variants, variant{"postgres", pg}, variant{"postgres + redis, no read cache", pgRedis},
		variant{"postgres + redis cache", pgCached}), ""
}

// serversDown says why the PostgreSQL and Redis variants cannot run ("" when
// they can): no URLs given, or a server that does not answer. A machine
// without them still gets the SQLite comparison.
func serversDown(ctx context.Context, cfg server.Config) string {
	if cfg.DatabaseURL == "" || cfg.RedisURL == "" {
		return "give --database-url and --redis-url (make bench: BENCH_DATABASE_URL, BENCH_REDIS_URL)"
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, drop, err := postgres.NewSchema(pctx, cfg.DatabaseURL, fmt.Sprintf("kb_probe_%d", time.Now().UnixNano()))
	if err != nil {
		return "no PostgreSQL answers at " + server.RedactURL(cfg.DatabaseURL)
	}
	_ = drop(pctx)
	r, err := redisstore.Open(pctx, cfg.RedisURL, "ketabridge-probe:")
	if err != nil {
		return "no Redis answers at " + server.RedactURL(cfg.RedisURL)
	}
	r.Close()
	return ""
}

// rps is a variant's requests/s in a scenario (0 when absent).
func (c *comparison) rps(variant, scenario string) float64 {
	for _, v := range c.Variants {
		if v.Name != variant {
			continue
		}
		for _, s := range v.Results.Scenarios {
			if s.Name == scenario {
				return s.RPS
			}
		}
	}
	return 0
}

// freshNamespace gives a run its own PostgreSQL schema and Redis key prefix,
// named label_<nanoseconds>, when cfg uses them, and returns the cleanup
// that drops them: the servers' existing data is never touched.
func freshNamespace(ctx context.Context, cfg server.Config, label string) (server.Config, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	if cfg.DatabaseURL != "" {
		u, drop, err := postgres.NewSchema(ctx, cfg.DatabaseURL, "kb_"+label+"_"+suffix)
		if err != nil {
			return cfg, cleanup, fmt.Errorf("PostgreSQL (%s): %w", server.RedactURL(cfg.DatabaseURL), err)
		}
		cleanups = append(cleanups, func() { _ = drop(context.Background()) })
		cfg.DatabaseURL = u
	}
	if cfg.RedisURL != "" {
		cfg.RedisPrefix = "ketabridge-" + label + ":" + suffix + ":"
		r, err := redisstore.Connect(cfg.RedisURL, cfg.RedisPrefix)
		if err != nil {
			cleanup()
			return cfg, func() {}, err
		}
		cleanups = append(cleanups, func() {
			_ = r.DeleteAll(context.Background())
			r.Close()
		})
	}
	return cfg, cleanup, nil
}

// storeLabel names cfg's store configuration for the results.
func storeLabel(cfg server.Config) string {
	s := "sqlite"
	if cfg.DatabaseURL != "" {
		s = "postgres"
	}
	switch {
	case !cfg.ReadCache && cfg.RedisURL != "":
		s += " + redis, no read cache"
	case !cfg.ReadCache:
	case cfg.RedisURL != "":
		s += " + redis cache"
	case cfg.CacheMB > 0 && cfg.DatabaseURL == "":
		s += fmt.Sprintf(" + memory cache (%d MiB)", cfg.CacheMB)
	}
	return s
}

func printComparison(w io.Writer, c *comparison) {
	fmt.Fprintf(w, "store comparison: %d patients, %d cores\n", c.Patients, c.Machine.Cores)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tingest res/s\tscenario\trequests/s\tp50 ms\tp99 ms\terrors\tpeak RSS MB\t")
	for _, v := range c.Variants {
		for i, s := range v.Results.Scenarios {
			name, ingest := "", ""
			if i == 0 {
				name, ingest = v.Name, fmt.Sprintf("%.0f", v.Results.Ingest.ResourcesPerS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t\n", name, ingest, s.Name, s.RPS, s.P50, s.P99, s.Errors, s.peakRSS)
		}
	}
	tw.Flush()
	for _, v := range c.Variants {
		if e := v.Results.Export; e != nil {
			fmt.Fprintf(w, "%s: %s\n", v.Name, exportLine(e))
		}
	}
	for _, sc := range []string{"read-hot", "read-uniform", "search"} {
		if r, ok := c.CachedOverUncachedPG[sc]; ok {
			fmt.Fprintf(w, "%s: PostgreSQL + Redis, read cache on over off: %.2fx (design target >= %gx)\n", sc, r, cacheTargets[sc])
		}
	}
	if c.Skipped != "" {
		fmt.Fprintln(w, "skipped:", c.Skipped)
	}
}

// cacheTargets are the design targets of the read cache on PostgreSQL +
// Redis, on over off (docs/benchmarks.md): repeated reads by id 3x, reads
// that miss no slower than no cache, searches 3x.
var cacheTargets = map[string]float64{"read-hot": 3, "read-uniform": 1, "search": 3}

// appendCompareDocs appends the comparison as a dated table.
func appendCompareDocs(path string, c *comparison) error {
	var b strings.Builder
	m := c.Machine
	fmt.Fprintf(&b, "\n### %s - store comparison, %s patients, %d cores, %s\n\n", m.Date, thousands(c.Patients), m.Cores, m.Go)
	b.WriteString("`ketabridge-bench --compare`: the same data set and scenarios on each store configuration; PostgreSQL and\n")
	b.WriteString("Redis are the local servers (loopback), in a fresh schema and key prefix.\n\n")
	b.WriteString("| store | ingest resources/s | scenario | requests/s | p50 ms | p99 ms | errors | peak RSS MB |\n|---|---|---|---|---|---|---|---|\n")
	for _, v := range c.Variants {
		for i, s := range v.Results.Scenarios {
			name, ingest := "", ""
			if i == 0 {
				name, ingest = v.Name, thousands(int(v.Results.Ingest.ResourcesPerS+0.5))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %.2f | %d | %.0f |\n", name, ingest, s.Name,
				thousands(int(s.RPS+0.5)), s.P50, s.P99, s.Errors, s.peakRSS)
		}
	}
	for _, v := range c.Variants {
		if e := v.Results.Export; e != nil {
			fmt.Fprintf(&b, "\n%s. %s\n", v.Name, exportLine(e))
		}
	}
	if len(c.CachedOverUncachedPG) > 0 {
		b.WriteString("\nPostgreSQL + Redis, read cache on over off:")
		for _, sc := range []string{"read-hot", "read-uniform", "search"} {
			if r, ok := c.CachedOverUncachedPG[sc]; ok {
				fmt.Fprintf(&b, " %s **%.2fx** (design target >= %gx);", sc, r, cacheTargets[sc])
			}
		}
		b.WriteString("\n")
	}
	if c.Skipped != "" {
		fmt.Fprintf(&b, "\nSkipped: %s.\n", c.Skipped)
	}
	return appendFile(path, []byte(b.String()))
}
