package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
)

// Compare-mode defaults: fewer patients than the 1M-resource run, so the
// PostgreSQL ingest of each variant stays within a minute or two.
const (
	benchComparePatients = 200
	// benchCompareCacheMB is the in-memory cache of the "memory cache"
	// variant.
	benchCompareCacheMB = 64
)

// benchCompareScenarios are the scenarios compare mode runs per variant.
var benchCompareScenarios = []string{"read-hot", "read-uniform", "search", "limit"}

// benchVariant is one store configuration of a comparison.
type benchVariant struct {
	Name    string        `json:"name"`
	Results *benchResults `json:"results"`
}

// benchComparison is compare.json.
type benchComparison struct {
	Machine  benchMachine   `json:"machine"`
	Patients int            `json:"patients"`
	Variants []benchVariant `json:"variants"`
	// CachedOverUncachedPG is, per scenario, requests/s with the Redis read
	// cache over requests/s without it, both on PostgreSQL with Redis for
	// the shared auth state (design target >= 3).
	CachedOverUncachedPG map[string]float64 `json:"cached_over_uncached_postgres,omitempty"`
	Skipped              string             `json:"skipped,omitempty"`
}

// benchCompare runs the compare scenarios on each store configuration:
// SQLite uncached, SQLite with the in-memory cache, and, when --database-url
// and --redis-url are given, PostgreSQL uncached and PostgreSQL with the
// Redis cache. Each PostgreSQL variant runs in a fresh schema and each Redis
// one under a fresh key prefix, removed afterwards: the servers named are
// used, never their existing data.
func benchCompare(ctx context.Context, cfg Config, p benchParams, small bool, out, docs string, e env) error {
	if p.patients == benchPatients {
		p.patients = benchComparePatients
	}
	if small {
		p.patients = min(p.patients, benchSmallPatients)
	}
	p.only = benchCompareScenarios
	cmp := benchComparison{Machine: machineInfo(), Patients: p.patients}

	base := cfg
	base.DatabaseURL, base.RedisURL, base.CacheMB, base.ReadCache = "", "", 0, false
	type variant struct {
		name string
		cfg  Config
	}
	variants := []variant{{"sqlite", base}}
	withMem := base
	withMem.CacheMB, withMem.ReadCache = benchCompareCacheMB, true
	variants = append(variants, variant{fmt.Sprintf("sqlite + memory cache (%d MiB)", benchCompareCacheMB), withMem})
	if why := benchServersDown(ctx, cfg); why != "" {
		cmp.Skipped = "PostgreSQL and Redis variants: " + why
		fmt.Fprintln(e.stderr, "bench: skipping the", cmp.Skipped)
	} else {
		pg := base
		pg.DatabaseURL = cfg.DatabaseURL
		pgRedis := pg
		pgRedis.RedisURL = cfg.RedisURL
		pgCached := pgRedis
		pgCached.ReadCache = true
		// The fair pair for the cache: both share auth state, revocations
		// and rate limits through Redis, one with the read cache on.
		variants = append(variants, variant{"postgres", pg}, variant{"postgres + redis, no read cache", pgRedis},
			variant{"postgres + redis cache", pgCached})
	}

	for _, v := range variants {
		fmt.Fprintf(e.stderr, "bench: --- %s ---\n", v.name)
		vcfg, cleanup, err := freshNamespace(ctx, v.cfg, "bench")
		if err != nil {
			return &exitError{code: 1, msg: "bench: " + v.name + ": " + err.Error()}
		}
		vp := p
		vp.store = v.name
		res, err := runBench(ctx, vcfg, vp, e.stderr)
		cleanup()
		if err != nil {
			return fmt.Errorf("bench: %s: %w", v.name, err)
		}
		cmp.Variants = append(cmp.Variants, benchVariant{Name: v.name, Results: res})
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

	printBenchComparison(e.stdout, &cmp)
	b, err := json.MarshalIndent(&cmp, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(out, "compare.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", path)
	if docs != "" {
		if err := appendCompareDocs(docs, &cmp); err != nil {
			return &exitError{code: 1, msg: err.Error()}
		}
		fmt.Fprintf(e.stdout, "appended the comparison to %s\n", docs)
	}
	return nil
}

// benchServersDown says why the PostgreSQL and Redis variants cannot run
// ("" when they can): no URLs given, or a server that does not answer. A
// machine without them still gets the SQLite comparison.
func benchServersDown(ctx context.Context, cfg Config) string {
	if cfg.DatabaseURL == "" || cfg.RedisURL == "" {
		return "give --database-url and --redis-url (make bench: BENCH_DATABASE_URL, BENCH_REDIS_URL)"
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgConnect(pctx, cfg.DatabaseURL)
	if err != nil {
		return "no PostgreSQL answers at " + redactURL(cfg.DatabaseURL)
	}
	conn.Close(pctx)
	opt, err := goredis.ParseURL(cfg.RedisURL)
	if err != nil {
		return "invalid Redis URL"
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(pctx).Err(); err != nil {
		return "no Redis answers at " + redactURL(cfg.RedisURL)
	}
	return ""
}

// rps is a variant's requests/s in a scenario (0 when absent).
func (c *benchComparison) rps(variant, scenario string) float64 {
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

// freshNamespace gives a run (a bench variant, a test) its own PostgreSQL
// schema and Redis key prefix, named label_<nanoseconds>, when cfg uses them,
// and returns the cleanup that drops them: the servers' existing data is
// never touched.
func freshNamespace(ctx context.Context, cfg Config, label string) (Config, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	if cfg.DatabaseURL != "" {
		schema := "kb_" + label + "_" + suffix
		conn, err := pgConnect(ctx, cfg.DatabaseURL)
		if err != nil {
			return cfg, cleanup, fmt.Errorf("connect to PostgreSQL (%s): %w", redactURL(cfg.DatabaseURL), err)
		}
		_, err = conn.Exec(ctx, "CREATE SCHEMA "+schema)
		conn.Close(ctx)
		if err != nil {
			return cfg, cleanup, fmt.Errorf("create schema: %w", err)
		}
		dbURL := cfg.DatabaseURL
		cleanups = append(cleanups, func() {
			c, err := pgConnect(context.Background(), dbURL)
			if err == nil {
				_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				c.Close(context.Background())
			}
		})
		u, err := url.Parse(cfg.DatabaseURL)
		if err != nil {
			return cfg, cleanup, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		cfg.DatabaseURL = u.String()
	}
	if cfg.RedisURL != "" {
		prefix := "ketabridge-" + label + ":" + suffix + ":"
		cfg.RedisPrefix = prefix
		redisURL := cfg.RedisURL
		cleanups = append(cleanups, func() {
			opt, err := goredis.ParseURL(redisURL)
			if err != nil {
				return
			}
			c := goredis.NewClient(opt)
			defer c.Close()
			bg := context.Background()
			iter := c.Scan(bg, 0, prefix+"*", 1000).Iterator()
			var keys []string
			for iter.Next(bg) {
				keys = append(keys, iter.Val())
				if len(keys) == 1000 {
					c.Del(bg, keys...)
					keys = keys[:0]
				}
			}
			if len(keys) > 0 {
				c.Del(bg, keys...)
			}
		})
	}
	return cfg, cleanup, nil
}

// pgConnect opens one connection with the URL the store's pool takes (its
// pool_* parameters are the pool's, not session settings).
func pgConnect(ctx context.Context, dbURL string) (*pgx.Conn, error) {
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, errors.New("invalid database url")
	}
	return pgx.ConnectConfig(ctx, pc.ConnConfig)
}

// storeLabel names cfg's store configuration for the results.
func storeLabel(cfg Config) string {
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

func printBenchComparison(w io.Writer, c *benchComparison) {
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
	for _, sc := range []string{"read-hot", "read-uniform", "search"} {
		if r, ok := c.CachedOverUncachedPG[sc]; ok {
			fmt.Fprintf(w, "%s: PostgreSQL + Redis, read cache on over off: %.2fx (design target >= 3x)\n", sc, r)
		}
	}
	if c.Skipped != "" {
		fmt.Fprintln(w, "skipped:", c.Skipped)
	}
}

// appendCompareDocs appends the comparison as a dated table.
func appendCompareDocs(path string, c *benchComparison) error {
	var b strings.Builder
	m := c.Machine
	fmt.Fprintf(&b, "\n### %s - store comparison, %s patients, %d cores, %s\n\n", m.Date, thousands(c.Patients), m.Cores, m.Go)
	b.WriteString("`ketabridge bench --compare`: the same data set and scenarios on each store configuration; PostgreSQL and\n")
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
	if len(c.CachedOverUncachedPG) > 0 {
		b.WriteString("\nPostgreSQL + Redis, read cache on over off (design target >= 3x):")
		for _, sc := range []string{"read-hot", "read-uniform", "search"} {
			if r, ok := c.CachedOverUncachedPG[sc]; ok {
				fmt.Fprintf(&b, " %s **%.2fx**;", sc, r)
			}
		}
		b.WriteString("\n")
	}
	if c.Skipped != "" {
		fmt.Fprintf(&b, "\nSkipped: %s.\n", c.Skipped)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
