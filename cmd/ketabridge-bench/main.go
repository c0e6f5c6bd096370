// Command ketabridge-bench is KetaBridge's benchmark (`make bench`, package
// bench): it ingests a seeded synthetic data set through a real gateway,
// serves it on loopback and measures reads and searches with vegeta; with
// --compare, on each store configuration. It is a binary of its own so that
// the product binary links no load generator or chart code.
//
// It takes the gateway's shared flags (--database-url, --redis-url,
// --rate-limit, ...) with their KETABRIDGE_* environment fallbacks, and its
// own. Exit codes: 0 done, 1 failed, 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ketabridge/ketabridge/bench"
	"github.com/ketabridge/ketabridge/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	p, cfg, mode, err := parse(args, getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "ketabridge-bench: "+strings.Join(strings.Fields(err.Error()), " "))
		return 2
	}
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		fmt.Fprintln(stderr, "ketabridge-bench: "+err.Error())
		return 1
	}
	switch {
	case mode.soak > 0:
		sp := bench.DefaultSoakParams(mode.soak)
		sp.Rate, sp.Seed, sp.Docs = mode.soakRate, p.Seed, p.Docs
		if p.Small {
			sp.Docs = ""
		}
		err = bench.Soak(ctx, cfg, sp, stdout, stderr)
	case mode.compare:
		err = bench.Compare(ctx, cfg, p, stdout, stderr)
	case len(mode.scale) > 0:
		err = bench.Scale(ctx, cfg, p, mode.scale, stdout, stderr)
	default:
		err = bench.Run(ctx, cfg, p, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ketabridge-bench: "+strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}

// mode is what a command line runs besides the benchmark: --compare,
// --soak (its duration and rate) or --scale (its sizes).
type mode struct {
	compare  bool
	soak     time.Duration
	soakRate int
	scale    []int
}

// newFlags returns the flag set with the benchmark's flags and the shared
// settings, and the function that reads them once parsed.
func newFlags() (*flag.FlagSet, func(getenv func(string) string) (bench.Params, server.Config, mode, error)) {
	fs := flag.NewFlagSet("ketabridge-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	small := fs.Bool("small", false, fmt.Sprintf("smoke run: %d patients, %s per scenario, no docs row unless --docs is given",
		bench.SmallPatients, bench.SmallDuration))
	patients := fs.Int("patients", bench.DefaultPatients, "number of synthetic patients (~860 resources each)")
	seed := fs.Int64("seed", 1, "random seed of the data set and of the request sequence")
	duration := fs.Duration("duration", bench.DefaultDuration, "how long each scenario runs")
	conns := fs.Int("connections", bench.DefaultConnections, "connections (and vegeta workers) per scenario")
	out := fs.String("out", "bench", "directory for results.json and the latency charts")
	docs := fs.String("docs", "docs/benchmarks.md", "Markdown file the dated rows are appended to (empty: none)")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run (default: all): "+strings.Join(bench.ScenarioNames, ", "))
	memProfile := fs.String("memprofile", "", "write each scenario's heap profile to PREFIX.<scenario>.heap and print the process's memory (Go heap in use and idle, runtime, stacks, outside Go: SQLite's page caches; file-backed) at the scenario's highest RSS")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the scenarios (gateway and load generator) to this file (with --scale, one per size: FILE.<resources>), for go tool pprof")
	ingestProfile := fs.String("ingest-cpuprofile", "", "write a CPU profile of the ingest to this file, and a heap profile taken at its end to this file + .heap, for go tool pprof")
	compare := fs.Bool("compare", false, "compare store configurations instead: SQLite, SQLite + memory cache, and, with --database-url / --redis-url, PostgreSQL uncached and PostgreSQL + Redis cache (fresh schema and key prefix, removed afterwards)")
	soak := fs.Duration("soak", 0, "run the soak instead (e.g. 10m): a fixed rate of mixed reads, searches and ingests with Redis paused and clients dropping connections mid-body on a schedule; errors by kind, RSS over time, every acknowledged record read back (make soak)")
	soakRate := fs.Int("soak-rate", bench.DefaultSoakRate, "requests/s of the soak")
	scale := fs.String("scale", "", "run the scale benchmark instead, at these sizes in resources (make bench-scale: "+bench.DefaultScaleSizes+
		"): one store loaded in steps and measured at each size (ingest resources/s, database size, "+strings.Join(bench.ScaleScenarios, ", ")+
		" requests/s and p99, peak RSS); writes scale.json and scale.svg to --out")
	bulkIngest := fs.Bool("bulk-ingest", false, "ingest inside a bulk load (store.BulkWriter, as ketabridge import --bulk) instead of with plain writes")
	warm := fs.Bool("warm", false, "before each patient-scoped scenario (search, everything-default), request each patient's answer once, untimed, so the scenario measures the steady state rather than the read cache filling (default with --scale)")
	auditOff := fs.Bool("audit-off", false, "serve the scenarios without an audit trail: the baseline of what auditing costs a read (a harness-only switch: the gateway itself always audits); no docs row unless --docs is given")
	cf := server.AddFlags(fs)
	return fs, func(getenv func(string) string) (bench.Params, server.Config, mode, error) {
		cfg, err := cf.Config(getenv)
		if err != nil {
			return bench.Params{}, cfg, mode{}, err
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		p := bench.Params{Patients: *patients, Seed: *seed, Duration: *duration, Connections: *conns, Out: *out,
			Docs: *docs, Warm: *warm, CPUProfile: *cpuProfile, IngestProfile: *ingestProfile, MemProfile: *memProfile, Small: *small, BulkIngest: *bulkIngest, AuditOff: *auditOff}
		if *auditOff && !given["docs"] {
			p.Docs = ""
		}
		if *small {
			if !given["patients"] {
				p.Patients = bench.SmallPatients
			}
			if !given["duration"] {
				p.Duration = bench.SmallDuration
			}
			if !given["docs"] {
				p.Docs = ""
			}
		}
		if !given["rate-limit"] && getenv("KETABRIDGE_RATE_LIMIT") == "" {
			// The limiter stays in the request path (its cost is measured)
			// at a rate no scenario reaches: one client drives all the load.
			cfg.RateLimit, cfg.RateBurst = 1e9, 1<<30
		}
		if p.Patients < 1 || p.Connections < 1 || p.Duration <= 0 {
			return p, cfg, mode{}, errors.New("--patients and --connections must be at least 1 and --duration positive")
		}
		if p.Out == "" {
			return p, cfg, mode{}, errors.New("--out must name a directory")
		}
		if *scenarios != "" {
			for _, name := range strings.Split(*scenarios, ",") {
				if !slices.Contains(bench.ScenarioNames, name) {
					return p, cfg, mode{}, fmt.Errorf("--scenarios: unknown scenario %q (want %s)", name, strings.Join(bench.ScenarioNames, ", "))
				}
				p.Only = append(p.Only, name)
			}
		}
		if *soak < 0 || *soakRate < 1 {
			return p, cfg, mode{}, errors.New("--soak must be positive and --soak-rate at least 1")
		}
		if *soak > 0 && *compare {
			return p, cfg, mode{}, errors.New("--soak and --compare are separate runs")
		}
		m := mode{compare: *compare, soak: *soak, soakRate: *soakRate}
		if given["scale"] {
			if *soak > 0 || *compare {
				return p, cfg, mode{}, errors.New("--scale, --soak and --compare are separate runs")
			}
			if given["patients"] {
				return p, cfg, mode{}, errors.New("--scale sets the data set's sizes in resources: --patients does not apply")
			}
			// The cost curve compares steady states: without the warm-up
			// each size's first seconds fill the cache with one miss per
			// patient, a cost that grows with the patients and not with
			// what a search costs (docs/benchmarks.md).
			p.Warm = !given["warm"] || *warm
			if m.scale, err = bench.ParseSizes(*scale); err != nil {
				return p, cfg, mode{}, fmt.Errorf("--scale: %w", err)
			}
		}
		return p, cfg, m, nil
	}
}

// parse reads the command line and the environment.
func parse(args []string, getenv func(string) string) (bench.Params, server.Config, mode, error) {
	fs, read := newFlags()
	if err := fs.Parse(args); err != nil {
		return bench.Params{}, server.Config{}, mode{}, err
	}
	if fs.NArg() > 0 {
		return bench.Params{}, server.Config{}, mode{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return read(getenv)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ketabridge-bench [--small] [--compare | --soak DURATION | --scale SIZES] [flags]")
	fmt.Fprintln(w, "\nThe KetaBridge benchmark: ingest throughput, then read and search latency under load (vegeta),")
	fmt.Fprintln(w, "against a real gateway on loopback with a real token. Writes results.json and latency charts to")
	fmt.Fprintln(w, "--out and appends the dated rows to --docs; --compare: the same scenarios on each store configuration;")
	fmt.Fprintln(w, "--soak: the soak test (faults injected, RSS over time, acknowledged records read back);")
	fmt.Fprintln(w, "--scale: the cost curve (one store loaded in steps to each size, e.g. "+bench.DefaultScaleSizes+", measured at each).")
	fs, _ := newFlags()
	server.WriteFlags(w, fs)
}
