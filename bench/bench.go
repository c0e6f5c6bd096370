// Package bench is KetaBridge's benchmark (`ketabridge-bench`, `make
// bench`): it synthesises a seeded data set, ingests it through a real
// gateway (package server) and reports the throughput, then serves it on a
// loopback listener, obtains a real token through client_credentials and
// drives read and search scenarios with vegeta at a fixed number of
// connections for a fixed time. It prints one table, writes results.json and
// one latency chart per scenario, and appends the dated rows to
// docs/benchmarks.md. Compare runs the same scenarios on each store
// configuration (SQLite, SQLite + memory cache, PostgreSQL, PostgreSQL +
// Redis) in a fresh PostgreSQL schema and Redis key prefix.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/internal/benchonly"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/postgres"
)

// Defaults: ~1,000,000 resources from 1,100 synthetic patients, 32
// connections, 10 s per scenario; Small is a smoke run.
const (
	DefaultPatients    = 1100
	SmallPatients      = 20
	DefaultDuration    = 10 * time.Second
	SmallDuration      = 3 * time.Second
	DefaultConnections = 32
	// hotSet is the number of ids read-hot (and the limit handler) cycle
	// through.
	hotSet = 16
	// sampleSize caps the ids read-uniform draws from: a uniform reservoir
	// sample of every stored compartment resource, so the id list does not
	// inflate the RSS being measured.
	sampleSize = 100_000
	// everythingSize is the compartment size $everything is measured on.
	everythingSize = 500
)

// Params are the parameters of one benchmark run.
type Params struct {
	Patients    int
	Seed        int64
	Duration    time.Duration
	Connections int
	// Only, when set, limits the scenarios run (by name, ScenarioNames).
	Only []string
	// Warm, when set, precedes each patient-scoped scenario (search,
	// everything-default) with one untimed request per patient (warmUp),
	// so that it measures the steady state, not the cache filling.
	// --scale sets it unless --warm=false.
	Warm bool
	// CPUProfile, when set, is the file the scenarios' CPU profile goes to.
	CPUProfile string
	// IngestProfile, when set, is the file the ingest's CPU profile goes to;
	// IngestProfile+".heap" gets a heap profile taken at the end of the
	// ingest, before anything is freed.
	IngestProfile string
	// MemProfile, when set, is the prefix of each scenario's heap profile
	// (MemProfile.<scenario>.heap), and each scenario prints where its
	// memory was at its highest anonymous RSS (memdiag.go).
	MemProfile string
	// WaitProfile, when set, is the prefix of each scenario's block and
	// mutex profiles and runtime trace (WaitProfile.<scenario>.block,
	// .mutex, .trace), and each scenario prints its GC pauses, scheduling
	// latency and GC assist (waitDiag).
	WaitProfile string
	// Pace, when above 0, paces each scenario at that many requests/s
	// (open loop, at most Connections in flight) instead of as fast as the
	// connections go: its latencies are those of a gateway below
	// saturation, without the closed loop's queue (PERF-ST-14).
	Pace int
	// Out is the directory of results.json, compare.json and the charts;
	// Docs the Markdown file the dated rows are appended to (empty: none).
	Out, Docs string
	// Small marks a smoke run (Compare caps the patients at SmallPatients).
	Small bool
	// BulkIngest ingests inside a bulk load (store.BulkWriter) instead of
	// with plain Apply calls, to compare the two.
	BulkIngest bool
	// AuditOff serves the scenarios without an audit trail
	// (internal/benchonly): the baseline of what auditing costs a read.
	// Only the harness can ask for it; the gateway has no such setting.
	AuditOff bool
	// store labels the store configuration in the results.
	store string
}

// Run measures one store configuration (cfg's: a temporary SQLite file, or
// a fresh schema and key prefix on the PostgreSQL and Redis cfg names),
// prints the table to stdout and writes the outputs.
func Run(ctx context.Context, cfg server.Config, p Params, stdout, stderr io.Writer) error {
	// Never the servers' existing data: a fresh schema and key prefix.
	bcfg, cleanup, err := freshNamespace(ctx, cfg, "bench")
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := run(ctx, bcfg, p, stderr)
	if err != nil {
		return err
	}
	printTable(stdout, res)
	if err := writeOutputs(p.Out, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %d latency charts\n", joinPath(p.Out, "results.json"), len(res.Scenarios))
	if p.Docs != "" {
		if err := appendDocs(p.Docs, p.Out, res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "appended the run to %s\n", p.Docs)
	}
	return nil
}

// gatewayRun is a gateway serving the benchmark's data set on loopback.
type gatewayRun struct {
	g      *server.Gateway
	base   string
	client *http.Client
	token  string
	// payerToken is a token of a client bound to a payer (docs/access.md):
	// the search-payer scenario's.
	payerToken string
	// key is the system client's key: freshToken obtains a new token
	// with it (a long run outlives one); payerKey the payer client's.
	key, payerKey *auth.BackendKey
	// cfg is the gateway's configuration (DataDir and DBPath: the database's
	// size on disk).
	cfg  server.Config
	stop func()
}

// startGateway opens a gateway for cfg in a temporary data directory on a
// loopback listener whose address is its base URL. stop shuts it down and
// removes the directory.
func startGateway(ctx context.Context, cfg server.Config) (*gatewayRun, error) {
	dir, err := os.MkdirTemp("", "ketabridge-bench-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg.DataDir, cfg.BaseURL = dir, "http://"+ln.Addr().String()
	g, err := server.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.Serve(sctx, ln) }()
	gr := &gatewayRun{g: g, base: cfg.BaseURL, cfg: cfg, client: &http.Client{Timeout: 30 * time.Second}}
	gr.stop = func() {
		cancel()
		<-served
		g.Close()
		os.RemoveAll(dir)
	}
	return gr, nil
}

// obtainToken registers a backend client with a fresh key and obtains a
// system/*.rs token through client_credentials, as any backend client does.
func (gr *gatewayRun) obtainToken(ctx context.Context) error {
	bk, err := auth.NewBackendKey("ketabridge-bench")
	if err != nil {
		return err
	}
	c, err := bk.Client("KetaBridge benchmark", "system/*.rs", time.Now())
	if err != nil {
		return err
	}
	if err := gr.g.RegisterClient(ctx, c); err != nil {
		return err
	}
	aud := gr.base + "/auth/token"
	if gr.token, err = bk.AccessToken(ctx, gr.client, aud, aud, "system/*.rs"); err != nil {
		return err
	}
	gr.key = bk
	// The payer: the same scopes, bound to the synthetic payer Blue Heron.
	pk, err := auth.NewBackendKey("ketabridge-bench-payer")
	if err != nil {
		return err
	}
	pc, err := pk.Client("KetaBridge benchmark payer", "system/*.rs", time.Now())
	if err != nil {
		return err
	}
	pc.Organization = mapping.ResourceID(clinic.KindOrganization, synth.OrgPayerBlueHeron)
	pc.Role = string(auth.RolePayer)
	if err := gr.g.RegisterClient(ctx, pc); err != nil {
		return err
	}
	gr.payerKey = pk
	gr.payerToken, err = pk.AccessToken(ctx, gr.client, aud, aud, "system/*.rs")
	return err
}

// refreshTokens obtains new tokens for the system and payer clients
// obtainToken registered: a scale run outlives the first ones.
func (gr *gatewayRun) refreshTokens(ctx context.Context) error {
	aud := gr.base + "/auth/token"
	var err error
	if gr.token, err = gr.key.AccessToken(ctx, gr.client, aud, aud, "system/*.rs"); err != nil {
		return err
	}
	gr.payerToken, err = gr.payerKey.AccessToken(ctx, gr.client, aud, aud, "system/*.rs")
	return err
}

// freshToken obtains a new system/*.rs token for the benchmark's system
// client.
func (gr *gatewayRun) freshToken(ctx context.Context) (string, error) {
	aud := gr.base + "/auth/token"
	return gr.key.AccessToken(ctx, gr.client, aud, aud, "system/*.rs")
}

// payerPatients returns the ids of the Patients the payer token sees (its
// view, read through the API page by page).
func (gr *gatewayRun) payerPatients(ctx context.Context, hdr http.Header) ([]string, error) {
	var ids []string
	next := gr.base + "/fhir/Patient?_elements=id&_count=500"
	for next != "" {
		b, status, err := get(ctx, gr.client, next, hdr)
		if err != nil || status != http.StatusOK {
			return nil, fmt.Errorf("bench: payer patients: status %d: %v", status, err)
		}
		var bundle struct {
			Link []struct {
				Relation, URL string
			} `json:"link"`
			Entry []struct {
				Resource struct {
					ID string `json:"id"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return nil, err
		}
		for _, e := range bundle.Entry {
			ids = append(ids, e.Resource.ID)
		}
		next = ""
		for _, l := range bundle.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("bench: the payer sees no patient")
	}
	return ids, nil
}

// run synthesises and ingests the data set into the store cfg selects,
// serves it on loopback and drives the scenarios.
func run(ctx context.Context, cfg server.Config, p Params, stderr io.Writer) (*results, error) {
	if p.store == "" {
		p.store = storeLabel(cfg)
	}
	res := results{
		Machine: machineInfo(),
		Run: runInfo{Patients: p.Patients, Seed: p.Seed, DurationS: p.Duration.Seconds(), Connections: p.Connections,
			Store: p.store, Load: "vegeta (in-process)", RSSScope: "process"},
	}
	fmt.Fprintf(stderr, "bench: synthesising %d patients (seed %d) to a temporary file\n", p.Patients, p.Seed)
	file, err := synthFile(p)
	if err != nil {
		return nil, err
	}
	defer os.Remove(file)
	gctx := ctx
	res.Run.Audit = "on"
	if p.AuditOff {
		gctx, res.Run.Audit = benchonly.Unaudited(ctx), "off (bench baseline)"
	}
	gr, err := startGateway(gctx, cfg)
	if err != nil {
		return nil, err
	}
	defer gr.stop()

	// 1. Ingest.
	fmt.Fprintf(stderr, "bench: ingesting the records (bulk load: %v)\n", p.BulkIngest)
	stopProfile, err := startIngestProfile(p.IngestProfile)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	in, err := ingestFile(ctx, gr.g, file, p.BulkIngest)
	el := time.Since(start)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	res.Ingest = ingestInfo{
		ResourcesPerS: round1(float64(in.sum.Resources) / el.Seconds()),
		Resources:     in.sum.Resources, Records: in.records, Rejected: in.sum.Rejected,
		Seconds: round3(el.Seconds()), PeakRSSMB: peakRSSMB(), Bulk: in.bulk,
	}
	if in.bulk {
		res.Ingest.BulkEndSeconds = round3(in.bulkEnd.Seconds())
	}
	if pg, ok := gr.g.Store().(*postgres.Store); ok {
		// The scenarios measure the steady state: planner statistics that
		// describe the loaded data (the store also starts this itself after
		// bulk writes, in the background).
		if err := pg.Analyze(ctx); err != nil {
			return nil, err
		}
	}
	pids := in.patients
	if len(pids) == 0 {
		return nil, errors.New("bench: no patients generated")
	}
	gatewayAtRest(cfg)

	// 2. Ids from the store: compartment sizes, a uniform sample of ids.
	fmt.Fprintf(stderr, "bench: reading ids from the store\n")
	ds, err := datasetFrom(ctx, gr.g.Store(), pids, p.Seed)
	if err != nil {
		return nil, err
	}
	res.Run.Types = ds.types
	res.Run.EverythingSize = ds.size

	// 3. A real token (client_credentials) and the scenarios.
	if err := gr.obtainToken(ctx); err != nil {
		return nil, fmt.Errorf("bench: token: %w", err)
	}
	if len(p.Only) == 0 || slices.Contains(p.Only, writeScenario) {
		if err := ds.prepareWrites(ctx, gr, file); err != nil {
			return nil, err
		}
	}
	if err := runScenarios(ctx, gr, ds, p, &res, stderr); err != nil {
		return nil, err
	}
	res.finish()
	res.Run.RSSEndAnonMB, res.Run.RSSEndFileMB = rssNowMB()
	return &res, nil
}

// startIngestProfile starts the ingest's CPU profile into file (none when
// file is empty); stop ends it and writes the heap profile beside it.
func startIngestProfile(file string) (stop func() error, err error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		err := f.Close()
		h, herr := os.Create(file + ".heap")
		if herr == nil {
			herr = pprof.Lookup("heap").WriteTo(h, 0)
			if cerr := h.Close(); herr == nil {
				herr = cerr
			}
		}
		return errors.Join(err, herr)
	}, nil
}

// ingestBatch is the number of records the benchmark hands the ingest
// pipeline at a time: the records stream from the synthesised file, so the
// ingest's memory is bounded by a batch, not by the data set (about 66,000
// resources a batch).
const ingestBatch = 2000

// synthFile writes the data set of p as NDJSON to a temporary file and
// returns its name: the records are streamed from it, not held in memory.
func synthFile(p Params) (string, error) {
	f, err := os.CreateTemp("", "ketabridge-bench-*.ndjson")
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err = synth.Generate(bw, synth.Options{Patients: p.Patients, Seed: p.Seed, Start: server.DemoStart, LongCourse: server.DemoLongCourse})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("bench: synth: %w", err)
	}
	return f.Name(), nil
}

// ingested is what ingestFile did.
type ingested struct {
	sum      ingest.Summary
	records  int
	patients []string      // the Patient ids, in order
	bulk     bool          // the store ran a bulk load
	bulkEnd  time.Duration // of which its end (bulk only)
}

// ingestFile ingests the NDJSON file through the gateway's pipeline,
// ingestBatch records at a time (the synthesiser writes records in
// dependency order, so a batch's references resolve against the batch and
// the records stored before it), inside one bulk load when bulk is set and
// the store has one (docs/design/architecture.md PERF-SQLB-1).
func ingestFile(ctx context.Context, g *server.Gateway, file string, bulk bool) (*ingested, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &ingested{}
	end := func(context.Context) error { return nil }
	if bulk {
		if end, out.bulk, err = g.BeginBulk(ctx); err != nil {
			return nil, err
		}
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var batch []json.RawMessage
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, sum, err := g.Ingester().Ingest(ctx, batch)
		out.sum.Created += sum.Created
		out.sum.Updated += sum.Updated
		out.sum.Unchanged += sum.Unchanged
		out.sum.Rejected += sum.Rejected
		out.sum.Resources += sum.Resources
		out.records += len(batch)
		out.patients = append(out.patients, patientIDs(batch)...)
		batch = nil
		return err
	}
	var ierr error
	for ierr == nil {
		line, err := r.ReadBytes('\n')
		if l := bytes.TrimSpace(line); len(l) > 0 {
			batch = append(batch, json.RawMessage(l))
			if len(batch) == ingestBatch {
				ierr = flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			ierr = err
		}
	}
	if ierr == nil {
		ierr = flush()
	}
	endStart := time.Now()
	if err := end(context.WithoutCancel(ctx)); err != nil && ierr == nil {
		ierr = fmt.Errorf("bench: end the bulk load: %w", err)
	}
	if out.bulk {
		// What the end of the load (search tables filled, indexes built)
		// cost of the ingest's time (docs/benchmarks.md PERF-SQLB-7).
		out.bulkEnd = time.Since(endStart)
	}
	if ierr != nil {
		return nil, ierr
	}
	return out, nil
}

// runScenarios serves the limit, checks each scenario once and runs them.
func runScenarios(ctx context.Context, gr *gatewayRun, ds *dataset, p Params, res *results, stderr io.Writer) error {
	authHdr := http.Header{"Authorization": {"Bearer " + gr.token}, "Accept": {"application/fhir+json"}}
	payerHdr := http.Header{"Authorization": {"Bearer " + gr.payerToken}, "Accept": {"application/fhir+json"}}
	var err error
	// The payer's patients, when a scenario draws from them.
	if len(p.Only) == 0 || slices.Contains(p.Only, "search-assessments") || slices.Contains(p.Only, "search-payer") {
		if ds.payerPatients, err = gr.payerPatients(ctx, payerHdr); err != nil {
			return err
		}
	}
	// The limit: the hot set's bytes, exactly as the gateway served them,
	// from memory by a bare net/http handler on its own server, no auth.
	hotBodies := make(map[string][]byte, len(ds.hot))
	for _, path := range ds.hot {
		b, status, err := get(ctx, gr.client, gr.base+path, authHdr)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("bench: read %s: status %d: %v", path, status, err)
		}
		hotBodies[path] = b
	}
	limitLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	limitSrv := &http.Server{Handler: bareHandler(hotBodies), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = limitSrv.Serve(limitLn) }()
	defer limitSrv.Close()

	scenarios := buildScenarios(ds, gr.base, "http://"+limitLn.Addr().String(), authHdr, payerHdr, uint64(p.Seed))
	export := len(p.Only) == 0 || slices.Contains(p.Only, exportName)
	if len(p.Only) > 0 {
		scenarios = slices.DeleteFunc(scenarios, func(sc scenario) bool { return !slices.Contains(p.Only, sc.name) })
	}
	for _, sc := range scenarios {
		if err := sc.preflight(ctx, gr.client); err != nil {
			return fmt.Errorf("bench: %s: %w", sc.name, err)
		}
	}
	if rssResettable() {
		res.Run.RSSScope = "process, reset before each scenario"
	}
	// The export scenario measures the export itself: it runs first, on the
	// gateway at rest after the ingest (issue 13: its memory flat whatever
	// the export's size). A full run repeats it after the read scenarios
	// (ExportAfter), where the process also holds what they left (the read
	// cache full): that row is the gateway's whole peak, reported beside it.
	if export {
		fmt.Fprintf(stderr, "bench: %s (a system export of every resource, downloaded; the gateway at rest after the ingest)\n", exportName)
		if res.Export, err = runExport(ctx, gr); err != nil {
			return fmt.Errorf("bench: %s: %w", exportName, err)
		}
	}
	if p.CPUProfile != "" {
		f, err := os.Create(p.CPUProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, sc := range scenarios {
		fmt.Fprintf(stderr, "bench: %s for %s\n", sc.name, p.Duration)
		conns := p.Connections
		if sc.conns > 0 {
			conns = sc.conns
		}
		ev0, by0, err := settleAudit(ctx, gr.g.Store())
		if err != nil {
			return fmt.Errorf("bench: %s: %w", sc.name, err)
		}
		var warmN int
		var warmD time.Duration
		if p.Warm {
			if warmN, warmD, err = warmUp(ctx, sc, gr.client, conns); err != nil {
				return fmt.Errorf("bench: %s: %w", sc.name, err)
			}
			if warmN > 0 {
				fmt.Fprintf(stderr, "bench: %s: warmed with %d requests (one per patient) in %.1f s\n", sc.name, warmN, warmD.Seconds())
			}
		}
		hit0, miss0 := gr.cacheCounts(ctx)
		search0 := gr.cacheCountsByOp(ctx)["search"]
		var hb0 map[string]float64
		if p.WaitProfile != "" {
			if hb0, err = handlerBuckets(ctx, gr.client, gr.base); err != nil {
				return err
			}
		}
		gc0, cycles0 := gcCPU()
		cpu0 := cpuSeconds()
		var w *writer
		if sc.writes {
			if len(ds.writes) == 0 {
				return fmt.Errorf("bench: %s: no records to write", sc.name)
			}
			w = startWrites(ctx, gr, ds.writes, authHdr, ds.writeToken)
		}
		r, err := attackScenario(sc, conns, p.Pace, p.Duration, p.MemProfile, p.WaitProfile, stderr)
		if w != nil {
			ws := w.stop()
			if err == nil {
				err = r.addWrites(ws, stderr)
			}
		}
		if err != nil {
			return fmt.Errorf("bench: %s: %w", sc.name, err)
		}
		if p.WaitProfile != "" {
			hb1, err := handlerBuckets(ctx, gr.client, gr.base)
			if err != nil {
				return err
			}
			printHandlerTail(stderr, sc.name, hb0, hb1)
		}
		r.WarmRequests, r.WarmSeconds = warmN, round3(warmD.Seconds())
		if s1 := gr.cacheCountsByOp(ctx)["search"]; sc.writes && s1[0]+s1[1] > search0[0]+search0[1] {
			// The searches' own hit ratio: the writes' lookups (a record's
			// earlier versions) count in the total.
			r.SearchHitRatio = round3((s1[0] - search0[0]) / (s1[0] + s1[1] - search0[0] - search0[1]))
		}
		if hit1, miss1 := gr.cacheCounts(ctx); hit1+miss1 > hit0+miss0 {
			r.CacheLookups = int64(hit1 + miss1 - hit0 - miss0)
			r.CacheHitRatio = round3((hit1 - hit0) / float64(r.CacheLookups))
		}
		ev1, by1, err := settleAudit(ctx, gr.g.Store())
		if err != nil {
			return fmt.Errorf("bench: %s: %w", sc.name, err)
		}
		r.AuditEvents, r.AuditBytes = ev1-ev0, by1-by0
		// The process's CPU time per request, the audit writes flushed
		// after the scenario included: steadier than requests/s on a
		// loaded machine, the figure to compare audited and unaudited
		// runs by.
		if cpu := cpuSeconds() - cpu0; cpu > 0 && r.requests > 0 {
			r.CPUPerRequestUS = round1(cpu * 1e6 / float64(r.requests))
			// The collector's share of it (runtime/metrics' estimate): what
			// a smaller heap goal, which collects more often, would
			// multiply (docs/design/security.md PERF-ST-13).
			gc1, cycles1 := gcCPU()
			fmt.Fprintf(stderr, "bench: %s: collector %.1f %% of the process CPU (%.0f us/request), %d cycles\n",
				sc.name, 100*(gc1-gc0)/cpu, (gc1-gc0)*1e6/float64(r.requests), cycles1-cycles0)
		}
		fmt.Fprintf(stderr, "bench: %s: %.0f requests/s, p99 %.2f ms (second half %.2f ms), %.0f µs CPU per request, cache hit ratio %.3f of %d lookups\n",
			sc.name, r.RPS, r.P99, r.P99Late, r.CPUPerRequestUS, r.CacheHitRatio, r.CacheLookups)
		if sc.writes {
			fmt.Fprintf(stderr, "bench: %s: the searches' own cache hit ratio %.3f (the writes' lookups apart)\n", sc.name, r.SearchHitRatio)
		}
		res.Scenarios = append(res.Scenarios, r)
	}
	if export && len(p.Only) == 0 && len(scenarios) > 0 {
		fmt.Fprintf(stderr, "bench: %s again, after the read scenarios\n", exportName)
		if res.ExportAfter, err = runExport(ctx, gr); err != nil {
			return fmt.Errorf("bench: %s after the scenarios: %w", exportName, err)
		}
	}
	return nil
}

// gcCPU returns the CPU seconds the collector has used (runtime/metrics'
// estimate: mark assists, dedicated and idle workers, pauses) and the
// cycles completed.
func gcCPU() (seconds float64, cycles uint64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64 {
		seconds = s[0].Value.Float64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		cycles = s[1].Value.Uint64()
	}
	return seconds, cycles
}

// gatewayAtRest hands the harness's garbage (the synthesised records, the
// ingest) back to the OS and applies the gateway's memory limit
// (--memory-limit-mb) as `ketabridge serve` does: from here on the
// process's memory is the gateway's, and a limit set before would only
// have slowed the harness's ingest. It returns the limit in force
// (server.ApplyMemoryLimit).
func gatewayAtRest(cfg server.Config) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return server.ApplyMemoryLimit(cfg)
}

// settleAudit waits until the audit writer has written what the last
// scenario queued (the trail's event count holds still across two polls,
// its batches flush every 200 ms) and returns the trail's events and bytes
// on disk (SQLite: dbstat; PostgreSQL: pg_total_relation_size): the
// scenario's audit growth is the difference around it.
func settleAudit(ctx context.Context, st store.Store) (events, bytes int64, err error) {
	ar, ok := st.(store.AuditArchive)
	if !ok {
		return 0, 0, nil
	}
	last, still := int64(-1), 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if events, bytes, err = ar.AuditUsage(ctx); err != nil {
			return 0, 0, err
		}
		if events == last {
			if still++; still == 2 {
				return events, bytes, nil
			}
		} else {
			last, still = events, 0
		}
		time.Sleep(300 * time.Millisecond)
	}
	return events, bytes, nil
}

// get fetches u with the header and returns the body and status.
func get(ctx context.Context, c *http.Client, u string, hdr http.Header) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header = hdr.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// cacheCounts returns the read cache's hits and misses so far (all
// operations), scraped from the gateway's /metrics on loopback (zeros
// when it cannot be read).
func (gr *gatewayRun) cacheCounts(ctx context.Context) (hits, misses float64) {
	c := gr.cacheCountsByOp(ctx)
	for _, hm := range c {
		hits += hm[0]
		misses += hm[1]
	}
	return hits, misses
}

// cacheCountsByOp returns the read cache's hits and misses so far by store
// operation (cached.Ops).
func (gr *gatewayRun) cacheCountsByOp(ctx context.Context) map[string][2]float64 {
	out := map[string][2]float64{}
	b, status, err := get(ctx, gr.client, gr.base+"/metrics", nil)
	if err != nil || status != http.StatusOK {
		return out
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("ketabridge_cache_requests_total{"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		_, op, _ := strings.Cut(f[0], `op="`)
		op, _, _ = strings.Cut(op, `"`)
		hm := out[op]
		switch {
		case strings.Contains(f[0], `result="hit"`):
			hm[0] += n
		case strings.Contains(f[0], `result="miss"`):
			hm[1] += n
		}
		out[op] = hm
	}
	return out
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

// dataset is what the scenarios draw from, read back from the store.
type dataset struct {
	// patients are the Patient ids; maPatients those with at least one
	// MedicationAdministration (search-include draws from them).
	patients, maPatients []string
	// payerPatients are those the payer client sees (search-payer and its
	// unrestricted twin draw from them).
	payerPatients []string
	// writes are search-writes' records and writeToken its write client's
	// token (writes.go); set only when that scenario runs.
	writes     []writeTarget
	writeToken string
	// sample is a uniform sample of every stored compartment resource
	// (samplePath gives its "/fhir/Type/id"); hot the paths of its first
	// hotSet entries.
	sample sampleIDs
	hot    []string
	// total is the number of compartment resources the sample is drawn from.
	total int
	// carePlans are the courses (CarePlan ids) pa-criteria draws from:
	// those a criteria set covers (paCovered).
	carePlans []string
	// everything is the patient whose compartment size is closest to
	// everythingSize, and size that size.
	everything string
	size       int
	types      []string
}

// datasetFrom reads each patient's compartment back from the store
// (Store.Everything) to size the compartments and draw a seeded uniform
// reservoir sample of all their resource ids.
func datasetFrom(ctx context.Context, st store.Store, pids []string, seed int64) (*dataset, error) {
	ds := &dataset{patients: pids}
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
			if r.Type == "CarePlan" && paCovered(r.Body) {
				ds.carePlans = append(ds.carePlans, r.ID)
			}
			ds.total++
			if ds.sample.len() < sampleSize {
				ds.sample.add(r.Type, r.ID)
			} else if j := rng.IntN(ds.total); j < sampleSize {
				ds.sample.set(j, r.Type, r.ID)
			}
		}
		if ma {
			ds.maPatients = append(ds.maPatients, pid)
		}
		if d := abs(len(rs) - everythingSize); best < 0 || d < best {
			best, ds.everything, ds.size = d, pid, len(rs)
		}
	}
	if ds.sample.len() == 0 || len(ds.maPatients) == 0 || len(ds.carePlans) == 0 {
		return nil, errors.New("bench: the store holds no compartment resources, no MedicationAdministration or no CarePlan")
	}
	// The reservoir's order follows the store's; shuffle so the hot set
	// mixes types.
	rng.Shuffle(ds.sample.len(), ds.sample.swap)
	for i := range min(hotSet, ds.sample.len()) {
		ds.hot = append(ds.hot, ds.sample.path(i))
	}
	for t := range types {
		ds.types = append(ds.types, t)
	}
	slices.Sort(ds.types)
	return ds, nil
}

// sampleIDs (docs/design/security.md PERF-ST-12) is the id sample of
// read-uniform, held by the load generator for the whole run in the
// gateway's process (whose peak RSS the bench reports): 100,000 ids as
// "/fhir/Type/id" strings were 11.9 MB of live heap at 1M resources, a
// third of the `$everything` scenario's, which the collector (GOGC 100)
// let double. Here a resource is its type's index and
// its id's 16 bytes when the id is a UUID in canonical form (every id the
// mapping makes), else the id itself: 17 bytes each, no pointers.
type sampleIDs struct {
	types  []string
	typeIx map[string]uint8
	ids    []sampleID
	// other holds the ids that are not canonical UUIDs, by sample index
	// (none in the synthetic data set).
	other map[int]string
}

type sampleID struct {
	typ  uint8
	uuid [16]byte
}

func (s *sampleIDs) len() int { return len(s.ids) }

func (s *sampleIDs) add(typ, id string) {
	s.ids = append(s.ids, sampleID{})
	s.set(len(s.ids)-1, typ, id)
}

func (s *sampleIDs) set(i int, typ, id string) {
	t, ok := s.typeIx[typ]
	if !ok {
		if s.typeIx == nil {
			s.typeIx = map[string]uint8{}
		}
		if len(s.types) > 255 {
			panic("bench: more than 256 resource types in the sample")
		}
		t = uint8(len(s.types))
		s.types = append(s.types, typ)
		s.typeIx[typ] = t
	}
	s.ids[i] = sampleID{typ: t}
	delete(s.other, i)
	if u, ok := parseUUID(id); ok {
		s.ids[i].uuid = u
		return
	}
	if s.other == nil {
		s.other = map[int]string{}
	}
	s.other[i] = id
}

func (s *sampleIDs) swap(i, j int) {
	s.ids[i], s.ids[j] = s.ids[j], s.ids[i]
	oi, iok := s.other[i]
	oj, jok := s.other[j]
	delete(s.other, i)
	delete(s.other, j)
	if iok {
		s.other[j] = oi
	}
	if jok {
		s.other[i] = oj
	}
}

// path returns the i-th sampled resource's "/fhir/Type/id".
func (s *sampleIDs) path(i int) string {
	e := &s.ids[i]
	if id, ok := s.other[i]; ok {
		return "/fhir/" + s.types[e.typ] + "/" + id
	}
	return "/fhir/" + s.types[e.typ] + "/" + uuid.UUID(e.uuid).String()
}

// parseUUID reads a UUID in canonical form (8-4-4-4-12 lowercase hex
// digits), the only form uuid.UUID.String gives back, so that path returns
// exactly the id it was given; any other id is kept as text.
func parseUUID(id string) ([16]byte, bool) {
	u, err := uuid.Parse(id)
	return u, err == nil && u.String() == id
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// paCovered reports whether a synthetic course's CarePlan instantiates a
// protocol a prior-authorization criteria set covers (priorauth/policies:
// IV ketamine, esketamine nasal spray); an IM or oral course has none and
// $pa-criteria answers it 422.
func paCovered(body []byte) bool {
	return bytes.Contains(body, []byte(`/protocol/proto-iv-ketamine"`)) || bytes.Contains(body, []byte(`/protocol/proto-spravato"`))
}
