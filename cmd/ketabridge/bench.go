package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
)

// Bench defaults: ~1,000,000 resources from 1,100 synthetic patients, 32
// connections, 10 s per scenario; --small is a smoke run.
const (
	benchPatients      = 1100
	benchSmallPatients = 20
	benchDuration      = 10 * time.Second
	benchSmallDuration = 3 * time.Second
	benchConnections   = 32
	// benchHotSet is the number of ids read-hot (and the limit handler) cycle
	// through.
	benchHotSet = 16
	// benchSample caps the ids read-uniform draws from: a uniform reservoir
	// sample of every stored compartment resource, so the id list does not
	// inflate the RSS being measured.
	benchSample = 100_000
	// benchEverythingSize is the compartment size $everything is measured on.
	benchEverythingSize = 500
)

// cmdBench is `ketabridge bench`: it synthesises a seeded data set
// into a temporary SQLite store and reports the ingest throughput, then starts
// the real gateway (a.newEcho) on loopback, obtains a real token through
// client_credentials, and drives each scenario with vegeta at a fixed number
// of connections for a fixed time. The gateway, SQLite and the load generator
// share one process and the same cores. It prints one table, writes
// results.json and one latency chart per scenario to --out, and appends the
// dated rows to --docs.
func cmdBench(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("bench")
	small := cf.fs.Bool("small", false, fmt.Sprintf("smoke run: %d patients, %s per scenario, no docs row unless --docs is given",
		benchSmallPatients, benchSmallDuration))
	patients := cf.fs.Int("patients", benchPatients, "number of synthetic patients (~860 resources each)")
	seed := cf.fs.Int64("seed", 1, "random seed of the data set and of the request sequence")
	duration := cf.fs.Duration("duration", benchDuration, "how long each scenario runs")
	conns := cf.fs.Int("connections", benchConnections, "connections (and vegeta workers) per scenario")
	out := cf.fs.String("out", "bench", "directory for results.json and the latency charts")
	docs := cf.fs.String("docs", "docs/benchmarks.md", "Markdown file the dated rows are appended to (empty: none)")
	scenarioList := cf.fs.String("scenarios", "", "comma-separated scenarios to run (default: all): read-hot, read-uniform, search, search-include, everything, limit")
	cpuProfile := cf.fs.String("cpuprofile", "", "write a CPU profile of the scenarios (gateway and load generator) to this file, for go tool pprof")
	compare := cf.fs.Bool("compare", false, "compare store configurations instead: SQLite, SQLite + memory cache, and, with --database-url / --redis-url, PostgreSQL uncached and PostgreSQL + Redis cache (fresh schema and key prefix, removed afterwards)")
	cfg, err := cf.parse(args, e.getenv)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	cf.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *small {
		if !set["patients"] {
			*patients = benchSmallPatients
		}
		if !set["duration"] {
			*duration = benchSmallDuration
		}
		if !set["docs"] {
			*docs = ""
		}
	}
	if !set["rate-limit"] && e.getenv("KETABRIDGE_RATE_LIMIT") == "" {
		// The limiter stays in the request path (its cost is measured) at a
		// rate no scenario reaches: one bench client drives all the load.
		cfg.RateLimit, cfg.RateBurst = 1e9, 1<<30
	}
	if *patients < 1 || *conns < 1 || *duration <= 0 {
		return &usageError{msg: "bench: --patients and --connections must be at least 1 and --duration positive"}
	}
	if *out == "" {
		return &usageError{msg: "bench: --out must name a directory"}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	if *compare {
		return benchCompare(ctx, cfg, benchParams{patients: *patients, seed: *seed, duration: *duration, conns: *conns},
			*small, *out, *docs, e)
	}
	// Never the servers' existing data: a fresh schema and key prefix.
	bcfg, cleanup, err := freshNamespace(ctx, cfg, "bench")
	if err != nil {
		return &exitError{code: 1, msg: "bench: " + err.Error()}
	}
	defer cleanup()
	bp := benchParams{patients: *patients, seed: *seed, duration: *duration, conns: *conns, cpuProfile: *cpuProfile}
	if *scenarioList != "" {
		for _, name := range strings.Split(*scenarioList, ",") {
			if !slices.Contains(benchScenarioNames, name) {
				return &usageError{msg: fmt.Sprintf("bench: --scenarios: unknown scenario %q (want %s)", name, strings.Join(benchScenarioNames, ", "))}
			}
			bp.only = append(bp.only, name)
		}
	}
	res, err := runBench(ctx, bcfg, bp, e.stderr)
	if err != nil {
		return err
	}
	// 4. Report.
	printBenchTable(e.stdout, res)
	if err := writeBenchOutputs(*out, res); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	fmt.Fprintf(e.stdout, "wrote %s and %d latency charts\n", benchJoin(*out, "results.json"), len(res.Scenarios))
	if *docs != "" {
		if err := appendBenchDocs(*docs, *out, res); err != nil {
			return &exitError{code: 1, msg: err.Error()}
		}
		fmt.Fprintf(e.stdout, "appended the run to %s\n", *docs)
	}
	return nil
}

// benchParams are the load parameters of one bench run.
type benchParams struct {
	patients int
	seed     int64
	duration time.Duration
	conns    int
	// only, when set, limits the scenarios run (by name); the limit is
	// always measured when read-hot is.
	only []string
	// store labels the store configuration in the results.
	store string
	// cpuProfile, when set, is the file the scenarios' CPU profile goes to.
	cpuProfile string
}

// runBench synthesises and ingests the data set into the store cfg selects
// (a temporary SQLite file, or the PostgreSQL / Redis cfg names), serves it
// on loopback and drives the scenarios.
func runBench(ctx context.Context, cfg Config, p benchParams, stderr io.Writer) (*benchResults, error) {
	patients, seed, duration, conns := &p.patients, &p.seed, &p.duration, &p.conns
	if p.store == "" {
		p.store = storeLabel(cfg)
	}
	log := newLogger(io.Discard, cfg.LogLevel)
	res := benchResults{
		Machine: machineInfo(),
		Run: benchRun{Patients: *patients, Seed: *seed, DurationS: duration.Seconds(), Connections: *conns,
			Store: p.store, Load: "vegeta (in-process)", RSSScope: "process"},
	}

	// 1. Synthesise and ingest.
	fmt.Fprintf(stderr, "bench: synthesising %d patients (seed %d)\n", *patients, *seed)
	a, raw, cleanup, err := tempApp(ctx, cfg, log, *patients, *seed)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Fprintf(stderr, "bench: ingesting %d records\n", len(raw))
	start := time.Now()
	_, sum, err := a.ingest.Ingest(ctx, raw)
	if err != nil {
		return nil, err
	}
	el := time.Since(start)
	res.Ingest = benchIngest{
		ResourcesPerS: round1(float64(sum.Resources) / el.Seconds()),
		Resources:     sum.Resources, Records: len(raw), Rejected: sum.Rejected,
		Seconds: round3(el.Seconds()), PeakRSSMB: peakRSSMB(),
	}
	if pg, ok := a.store.(*postgres.Store); ok {
		// The scenarios measure the steady state: planner statistics that
		// describe the loaded data (the store also starts this itself after
		// bulk writes, in the background).
		if err := pg.Analyze(ctx); err != nil {
			return nil, err
		}
	}
	pids := patientIDs(raw)
	if len(pids) == 0 {
		return nil, fmt.Errorf("bench: no patients generated")
	}
	// The records are no longer needed: release them so the serving phase's
	// RSS is the gateway's, not the synthesiser's.
	raw = nil
	runtime.GC()
	debug.FreeOSMemory()

	// 2. Ids from the store: compartment sizes, a uniform sample of ids.
	fmt.Fprintf(stderr, "bench: reading ids from the store\n")
	ds, err := benchDatasetFrom(ctx, a.store, pids, *seed)
	if err != nil {
		return nil, err
	}
	res.Run.Types = ds.types
	res.Run.EverythingSize = ds.size

	// 3. The gateway on loopback and a real token (client_credentials).
	ec, err := a.newEcho(log)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(ec)
	defer srv.Close()
	tok, err := a.toolToken(ctx, srv.Client(), srv.URL, "system/*.rs")
	if err != nil {
		return nil, fmt.Errorf("bench: token: %w", err)
	}
	auth := http.Header{"Authorization": {"Bearer " + tok}, "Accept": {"application/fhir+json"}}

	// The limit: the hot set's bytes, exactly as the gateway served them,
	// from memory by a bare net/http handler on its own server, no auth.
	hotBodies := make(map[string][]byte, len(ds.hot))
	for _, p := range ds.hot {
		b, status, err := httpGet(ctx, srv.Client(), srv.URL+p, "Authorization", "Bearer "+tok)
		if err != nil || status != http.StatusOK {
			return nil, fmt.Errorf("bench: read %s: status %d: %v", p, status, err)
		}
		hotBodies[p] = b
	}
	limitSrv := httptest.NewServer(bareHandler(hotBodies))
	defer limitSrv.Close()

	scenarios := benchScenarios(ds, srv.URL, limitSrv.URL, auth, uint64(*seed))
	if len(p.only) > 0 {
		scenarios = slices.DeleteFunc(scenarios, func(sc benchScenario) bool { return !slices.Contains(p.only, sc.name) })
	}
	for _, sc := range scenarios {
		if err := sc.preflight(ctx, srv.Client()); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", sc.name, err)
		}
	}
	if rssResettable() {
		res.Run.RSSScope = "process, reset before each scenario"
	}
	if p.cpuProfile != "" {
		f, err := os.Create(p.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, sc := range scenarios {
		fmt.Fprintf(stderr, "bench: %s for %s\n", sc.name, *duration)
		r, err := attackScenario(sc, *conns, *duration)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", sc.name, err)
		}
		res.Scenarios = append(res.Scenarios, r)
	}
	res.finish()
	res.Run.RSSEndAnonMB, res.Run.RSSEndFileMB = rssNowMB()
	return &res, nil
}

// patientIDs returns the FHIR ids of the Patient records in raw, in order.
func patientIDs(raw []json.RawMessage) []string {
	var pids []string
	for _, r := range raw {
		var h clinic.Header
		if json.Unmarshal(r, &h) == nil && h.Kind == clinic.KindPatient {
			pids = append(pids, mapping.ResourceID(clinic.KindPatient, h.ID))
		}
	}
	return pids
}

// benchDataset is what the scenarios draw from, read back from the store.
type benchDataset struct {
	// patients are the Patient ids; maPatients those with at least one
	// MedicationAdministration (search-include draws from them).
	patients, maPatients []string
	// sample is a uniform sample of every stored compartment resource, as
	// "/fhir/Type/id"; hot its first benchHotSet entries.
	sample, hot []string
	// total is the number of compartment resources the sample is drawn from.
	total int
	// everything is the patient whose compartment size is closest to
	// benchEverythingSize, and size that size.
	everything string
	size       int
	types      []string
}

// benchDatasetFrom reads each patient's compartment back from the store
// (Store.Everything) to size the compartments and draw a seeded uniform
// reservoir sample of all their resource ids.
func benchDatasetFrom(ctx context.Context, st store.Store, pids []string, seed int64) (*benchDataset, error) {
	ds := &benchDataset{patients: pids}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6b657461))
	types := map[string]bool{}
	best := -1
	for _, pid := range pids {
		rs, _, err := st.Everything(ctx, store.EverythingQuery{Patient: pid})
		if err != nil {
			return nil, fmt.Errorf("bench: everything %s: %w", pid, err)
		}
		ma := false
		for i := range rs {
			r := &rs[i]
			types[r.Type] = true
			ma = ma || r.Type == "MedicationAdministration"
			ds.total++
			p := "/fhir/" + r.Type + "/" + r.ID
			if len(ds.sample) < benchSample {
				ds.sample = append(ds.sample, p)
			} else if j := rng.IntN(ds.total); j < benchSample {
				ds.sample[j] = p
			}
		}
		if ma {
			ds.maPatients = append(ds.maPatients, pid)
		}
		if d := abs(len(rs) - benchEverythingSize); best < 0 || d < best {
			best, ds.everything, ds.size = d, pid, len(rs)
		}
	}
	if len(ds.sample) == 0 || len(ds.maPatients) == 0 {
		return nil, fmt.Errorf("bench: the store holds no compartment resources or no MedicationAdministration")
	}
	// The reservoir's order follows the store's; shuffle so the hot set
	// mixes types.
	rng.Shuffle(len(ds.sample), func(i, j int) { ds.sample[i], ds.sample[j] = ds.sample[j], ds.sample[i] })
	ds.hot = ds.sample[:min(benchHotSet, len(ds.sample))]
	for t := range types {
		ds.types = append(ds.types, t)
	}
	slices.Sort(ds.types)
	return ds, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
