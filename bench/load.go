package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// scenario is one measured workload: the request paths it cycles
// through against one server.
type scenario struct {
	name string
	base string
	hdr  http.Header
	// path returns the i-th request's path and query.
	path func(i uint64) string
	// include asks preflight for at least one _include entry.
	include bool
	// bundle asks preflight for at least one match entry.
	bundle bool
	// params asks preflight for a Parameters with a result (an operation's
	// answer).
	params bool
	// conns, when set, replaces the run's connections for this scenario.
	conns int
	// keys are the distinct patients whose answers the scenario draws
	// (path(i) picks one of them), for Params.Warm's pass: warm(j) is the
	// path of keys[j]. Nil: no warm-up (a scenario over one compartment,
	// or over a sample of ids meant to miss).
	keys []string
	warm func(j int) string
	// writes runs the scenario's write load beside it (writes.go).
	writes bool
}

// ScenarioNames are the scenarios' names, in run order.
var ScenarioNames = []string{"read-hot", "read-uniform", "search", writeScenario, "search-include", "search-assessments", "search-payer", "everything", "everything-default", "pa-criteria", "limit", exportName}

// paConnections are the connections of the pa-criteria scenario: one, so
// that its latency is one evaluation's and not the queue 32 callers make on
// two cores (the target is a latency: p99 <= 20 ms for a course).
const paConnections = 1

// scenarios builds the benchmark scenarios, in run order. Every
// request sequence is a pure function of the seed.
func buildScenarios(ds *dataset, gw, limit string, auth, payer http.Header, seed uint64) []scenario {
	pick := func(l []string, i uint64, salt uint64) string { return l[mix(seed^salt, i)%uint64(len(l))] }
	// Unauthenticated, but the same Accept header as the gateway reads.
	bare := http.Header{"Accept": {"application/fhir+json"}}
	return []scenario{
		{name: "read-hot", base: gw, hdr: auth, path: func(i uint64) string { return pick(ds.hot, i, 1) }},
		{name: "read-uniform", base: gw, hdr: auth, path: func(i uint64) string {
			return ds.sample.path(int(mix(seed^2, i) % uint64(ds.sample.len())))
		}},
		{name: "search", base: gw, hdr: auth, bundle: true, path: func(i uint64) string {
			return searchPath(pick(ds.patients, i, 3))
		}, keys: ds.patients, warm: func(j int) string { return searchPath(ds.patients[j]) }},
		// The same searches while records of the searched patients change
		// (writes.go): what the read cache keeps across writes.
		{name: writeScenario, base: gw, hdr: auth, bundle: true, writes: true, path: func(i uint64) string {
			return searchPath(pick(ds.patients, i, 3))
		}, keys: ds.patients, warm: func(j int) string { return searchPath(ds.patients[j]) }},
		{name: "search-include", base: gw, hdr: auth, bundle: true, include: true, path: func(i uint64) string {
			return "/fhir/MedicationAdministration?patient=" + pick(ds.maPatients, i, 4) +
				"&_include=MedicationAdministration:medication"
		}},
		// A payer's prior-authorization lookup (assessment scores), and the
		// same requests by the unrestricted system client: the cost of the
		// payer view (docs/access.md) is the ratio of the two.
		{name: "search-assessments", base: gw, hdr: auth, bundle: true, path: func(i uint64) string {
			return "/fhir/Observation?patient=" + pick(ds.payerPatients, i, 5) + "&category=survey&_count=50"
		}},
		{name: "search-payer", base: gw, hdr: payer, bundle: true, path: func(i uint64) string {
			return "/fhir/Observation?patient=" + pick(ds.payerPatients, i, 5) + "&category=survey&_count=50"
		}},
		{name: "everything", base: gw, hdr: auth, bundle: true, path: func(uint64) string {
			return "/fhir/Patient/" + ds.everything + "/$everything?_count=" + strconv.Itoa(everythingSize)
		}},
		// $everything as a client that does not page by hand asks for it:
		// no _count (the default page: $everything's, search.MaxCount entries, with the
		// compartment's total), patients uniform, as the outside comparison
		// measures it.
		{name: "everything-default", base: gw, hdr: auth, bundle: true, path: func(i uint64) string {
			return "/fhir/Patient/" + pick(ds.patients, i, 7) + "/$everything"
		}, keys: ds.patients, warm: func(j int) string { return "/fhir/Patient/" + ds.patients[j] + "/$everything" }},
		// A course's prior-authorization checklist (docs/prior-auth.md),
		// courses uniform, by the system client, one connection.
		{name: "pa-criteria", base: gw, hdr: auth, params: true, conns: paConnections, path: func(i uint64) string {
			return "/fhir/CarePlan/" + pick(ds.carePlans, i, 6) + "/$pa-criteria"
		}},
		// The same reads as read-hot, from memory, no auth: the limit.
		{name: "limit", base: limit, hdr: bare, path: func(i uint64) string { return pick(ds.hot, i, 1) }},
	}
}

// searchPath is the search scenario's request for one patient: heart rate
// (LOINC 8867-4), which is recorded at every vitals set.
func searchPath(patient string) string {
	return "/fhir/Observation?patient=" + patient + "&code=http://loinc.org|8867-4&date=ge2024-01-01&date=le2027-12-31&_count=50"
}

// mix is splitmix64 of seed+i: a lock-free, reproducible request sequence.
func mix(seed, i uint64) uint64 {
	z := seed + (i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// targeter yields the scenario's requests in sequence; safe for vegeta's
// concurrent workers (Target.Request copies the shared header).
func (sc scenario) targeter() vegeta.Targeter {
	var n atomic.Uint64
	return func(t *vegeta.Target) error {
		i := n.Add(1) - 1
		t.Method = http.MethodGet
		t.URL = sc.base + sc.path(i)
		t.Header = sc.hdr
		return nil
	}
}

// preflight sends the scenario's first request once and checks it is a 200
// with what the scenario is meant to exercise, so a run never measures
// errors or empty Bundles.
func (sc scenario) preflight(ctx context.Context, c *http.Client) error {
	b, status, err := get(ctx, c, sc.base+sc.path(0), sc.hdr)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("preflight: status %d", status)
	}
	if sc.params {
		var p struct {
			ResourceType string `json:"resourceType"`
			Parameter    []struct {
				Name string `json:"name"`
			} `json:"parameter"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("preflight: %w", err)
		}
		result := false
		for _, q := range p.Parameter {
			result = result || q.Name == "result"
		}
		if p.ResourceType != "Parameters" || !result {
			return fmt.Errorf("preflight: not a Parameters with a result")
		}
		return nil
	}
	if !sc.bundle {
		return nil
	}
	var bundle struct {
		Entry []struct {
			Search struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	modes := map[string]int{}
	for _, e := range bundle.Entry {
		modes[e.Search.Mode]++
	}
	if modes["match"] == 0 || (sc.include && modes["include"] == 0) {
		return fmt.Errorf("preflight: the Bundle has %d match and %d include entries", modes["match"], modes["include"])
	}
	return nil
}

// loadReadBuffer is the load generator's read buffer per connection
// (docs/design/security.md PERF-ST-15). net/http's default, 4 KiB, made
// the client read a 650 KB $everything answer in about 80 read calls of
// 8 KiB (io.Discard's buffer goes around it); 64 KiB takes it in about ten.
// Nothing on the wire changes: the same requests on the same keep-alive
// connections, read to the end.
const loadReadBuffer = 64 << 10

// loadClient is vegeta's own HTTP client (vegeta.NewAttacker's defaults:
// its dialer, proxy from the environment, TLS config and idle connection
// limit), with the larger read buffer; attackScenario's options set the
// connections, keep-alive, HTTP/1.1 and the timeout on it as before.
func loadClient() *http.Client {
	dialer := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: vegeta.DefaultLocalAddr.IP, Zone: vegeta.DefaultLocalAddr.Zone},
		KeepAlive: 30 * time.Second,
	}
	return &http.Client{
		Timeout: vegeta.DefaultTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dialer.DialContext,
			TLSClientConfig:     vegeta.DefaultTLSConfig,
			MaxIdleConnsPerHost: vegeta.DefaultConnections,
			MaxConnsPerHost:     vegeta.DefaultMaxConnections,
			ReadBufferSize:      loadReadBuffer,
		},
	}
}

// attackScenario runs the scenario with vegeta at conns connections and as
// many workers (an unpaced, closed-loop load) for d, and summarises it with
// vegeta.Metrics. Peak RSS is the process's VmHWM, reset first when the
// kernel allows.
func attackScenario(sc scenario, conns, rate int, d time.Duration, memProfile, waitProfile string, stderr io.Writer) (scenarioResult, error) {
	// Each scenario's peak starts from the gateway at rest: the heap the
	// previous scenario grew (and the runtime keeps for a while) is handed
	// back to the OS first, so it does not count against this one.
	debug.FreeOSMemory()
	resetPeakRSS()
	// The attacker's own transport, so that its keep-alive connections
	// are closed when the scenario ends (docs/design/security.md
	// PERF-ST-16): left open, each scenario's 32 idle connections, with
	// the gateway's goroutine, buffers and stack for each and the
	// client's two, stayed in the process until the gateway's 2-minute
	// idle timeout, through every later scenario's peak.
	client := loadClient()
	defer client.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(client), // first: the options below configure its transport
		vegeta.Workers(uint64(conns)), vegeta.MaxWorkers(uint64(conns)),
		vegeta.Connections(conns), vegeta.MaxConnections(conns),
		vegeta.KeepAlive(true), vegeta.HTTP2(false), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Timeout(30*time.Second),
		// Bodies are read to the end and discarded, not kept: nothing reads
		// them, and buffering a 650 KB $everything Bundle per request cost
		// the shared cores a quarter of that scenario's CPU.
		vegeta.MaxBody(0),
	)
	endDiag := memDiag(memProfile, sc.name, stderr)
	endWait := waitDiag(waitProfile, sc.name, stderr)
	var m, late vegeta.Metrics
	var errs int
	var first string
	half := time.Now().Add(d / 2)
	pacer := vegeta.ConstantPacer{} // as fast as the connections go
	if rate > 0 {
		pacer = vegeta.ConstantPacer{Freq: rate, Per: time.Second}
	}
	for r := range atk.Attack(sc.targeter(), pacer, d, sc.name) {
		m.Add(r)
		if r.Timestamp.After(half) {
			late.Add(r)
		}
		if r.Code != http.StatusOK || r.Error != "" {
			errs++
			if first == "" {
				first = fmt.Sprintf("status %d %s", r.Code, r.Error)
			}
		}
	}
	m.Close()
	late.Close()
	endWait(m.Requests)
	endDiag()
	if m.Requests == 0 {
		return scenarioResult{}, fmt.Errorf("no request completed")
	}
	ms := func(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
	r := scenarioResult{
		Name: sc.name, RPS: round1(m.Throughput),
		P50: ms(m.Latencies.P50), P95: ms(m.Latencies.P95), P99: ms(m.Latencies.P99), Max: ms(m.Latencies.Max),
		Errors:   errs,
		requests: m.Requests, p90: ms(m.Latencies.P90), mean: ms(m.Latencies.Mean),
		peakRSS: peakRSSMB(), firstError: first,
	}
	if late.Requests > 0 {
		r.P99Late = ms(late.Latencies.P99)
	}
	if sc.conns > 0 {
		r.Connections = conns
	}
	return r, nil
}

// warmUp requests each of the scenario's distinct answers once, untimed,
// at conns connections (Params.Warm): the measured run then starts from
// the steady state a gateway serving those patients for longer than a
// few seconds is in, whatever the cache can hold of them, instead of
// from a cache the previous scenario filled with its own answers, whose
// filling (one miss per patient, so longer the more patients the store
// holds) lands in the first seconds of the scenario and so in its tail.
// It returns the requests and how long they took.
func warmUp(ctx context.Context, sc scenario, c *http.Client, conns int) (int, time.Duration, error) {
	n := len(sc.keys)
	if n == 0 || sc.warm == nil {
		return 0, 0, nil
	}
	start := time.Now()
	var next atomic.Int64
	errc := make(chan error, conns)
	for range conns {
		go func() {
			for {
				j := int(next.Add(1) - 1)
				if j >= n || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				_, status, err := get(ctx, c, sc.base+sc.warm(j), sc.hdr)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("warm-up: status %d", status)
				}
				if err != nil {
					next.Store(int64(n)) // the others stop too
					errc <- err
					return
				}
			}
		}()
	}
	var first error
	for range conns {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return n, time.Since(start), first
}

// bareHandler serves the given bodies by path from memory: the least work a
// server can do for these responses, with the gateway's content type.
func bareHandler(bodies map[string][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
}

// rssNowMB returns the process's current anonymous and file-backed resident
// memory in MiB (RssAnon, RssFile): SQLite maps the database file, so its
// pages in the OS cache count towards RSS as file-backed memory.
func rssNowMB() (anon, file float64) {
	return procStatusMB("RssAnon:"), procStatusMB("RssFile:")
}

// peakRSSMB is the process's peak resident set (VmHWM in /proc/self/status)
// in MiB, or 0 where /proc is not available. The gateway, SQLite and the
// load generator all run in this process.
func peakRSSMB() float64 { return procStatusMB("VmHWM:") }

// procStatusMB reads one kB field of /proc/self/status in MiB (0 when
// unavailable).
func procStatusMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			f := strings.Fields(string(rest))
			if len(f) > 0 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return round1(kb / 1024)
				}
			}
		}
	}
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (Linux clear_refs "5") and
// reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// rssResettable reports whether per-scenario peak RSS is possible here.
func rssResettable() bool { return resetPeakRSS() }

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
