package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/server"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
)

// Soak defaults (`make soak`): 10 minutes at 40 requests/s of mixed reads,
// searches and ingests against a gateway on SQLite with the Redis read cache.
const (
	DefaultSoakRate     = 40
	DefaultSoakPatients = 20
	// soakBatch is the number of records per ingest request.
	soakBatch = 5
	// soakExtraPatients are synthesised beyond the base data set; their
	// records are what the soak ingests (re-sent from the start once used).
	soakExtraPatients = 60
	// rssTolerance is the target: RSS at the end at most 10 % above RSS
	// after the warm-up, each the median of a third of the samples after
	// the warm-up (rssVerdict).
	rssTolerance = 0.10
	// pauseGrace is how long after a Redis pause ends a 503 still counts as
	// the pause's: connections that timed out during it are redialled.
	pauseGrace = 2 * time.Second
)

// SoakParams are the parameters of a soak run.
type SoakParams struct {
	Duration time.Duration
	// Rate is the fixed request rate (requests/s) of the mixed load.
	Rate int
	// Patients is the base data set the reads and searches draw from.
	Patients int
	Seed     int64
	// PauseEvery and PauseFor schedule the Redis pauses (none when Redis is
	// not used); DropEvery the clients that drop their connection mid-body.
	PauseEvery, PauseFor, DropEvery time.Duration
	// Docs is the Markdown file the dated section is appended to (empty:
	// none).
	Docs string
}

// DefaultSoakParams returns the parameters of a soak of duration d, with the
// fault schedule scaled to it (at least one Redis pause and a few drops).
func DefaultSoakParams(d time.Duration) SoakParams {
	p := SoakParams{Duration: d, Rate: DefaultSoakRate, Patients: DefaultSoakPatients, Seed: 1,
		PauseEvery: time.Minute, PauseFor: 3 * time.Second, DropEvery: 5 * time.Second, Docs: "docs/benchmarks.md"}
	if d < 2*time.Minute {
		p.PauseEvery, p.PauseFor, p.DropEvery = d/3, min(3*time.Second, d/6), max(d/8, 200*time.Millisecond)
	}
	return p
}

// window is one injected Redis pause.
type window struct{ from, to time.Time }

// Error classes of the soak's answers.
const (
	classOK         = "2xx"
	classPause503   = "503 during a Redis pause (documented)"
	classUnexpected = "5xx other than the documented 503s"
	classTransport  = "transport error (no answer)"
)

// classify names the class of one answer: 2xx, a 4xx by its code, a 503
// whose request overlapped a Redis pause (docs/deploy.md "Failure
// behaviour": ingest and the token endpoint answer 503 while Redis hangs),
// any other 5xx, or no answer at all.
func classify(code int, start time.Time, latency time.Duration, pauses []window) string {
	switch {
	case code == 0:
		return classTransport
	case code >= 200 && code < 300:
		return classOK
	case code == http.StatusServiceUnavailable && overlapsPause(start, start.Add(latency), pauses):
		return classPause503
	case code >= 500:
		return classUnexpected
	}
	return strconv.Itoa(code)
}

// overlapsPause reports whether [from, to] meets a pause (extended by
// pauseGrace).
func overlapsPause(from, to time.Time, pauses []window) bool {
	for _, w := range pauses {
		if !to.Before(w.from) && !from.After(w.to.Add(pauseGrace)) {
			return true
		}
	}
	return false
}

// rssSample is one reading of the process's memory.
type rssSample struct {
	At                  time.Duration // since the load started
	RSSMB, AnonMB, File float64
	Goroutines          int
}

// rssWindow is the RSS verdict over the samples after the warm-up.
type rssWindow struct {
	// N is the number of samples after the warm-up; K the number in each
	// third compared.
	N, K int
	// First and Last are the medians (MB) of the first and the last third
	// of them; Change is (Last-First)/First.
	First, Last, Change float64
	// Slope is the least-squares slope over all of them, in MB per minute
	// (reported beside the verdict, not part of it).
	Slope float64
	// Within: RSS did not grow by more than the tolerance (Change <= tol).
	Within bool
}

// rssVerdict judges whether RSS grew after the warm-up: the median of the
// last third of the samples taken at or after warmup against the median of
// the first third, at most tol (a fraction) above it (docs/benchmarks.md,
// Soak). One sample against another swung by a quarter to a half on a
// loaded machine (a GC cycle, the Go runtime handing memory back, a burst of
// queued requests); the median of a third of a 10-minute run (about 36
// samples) is not moved by a few of them, while memory that grows over the
// run moves every sample of the last third. A fall is reported (Change),
// not failed: memory handed back is no leak. ok is false when there are
// fewer than 3 samples after the warm-up (or no /proc).
func rssVerdict(samples []rssSample, warmup time.Duration, tol float64) (w rssWindow, ok bool) {
	var after []rssSample
	for _, s := range samples {
		if s.At >= warmup && s.RSSMB > 0 {
			after = append(after, s)
		}
	}
	if len(after) < 3 {
		return rssWindow{}, false
	}
	w.N, w.K = len(after), len(after)/3
	w.First = medianRSS(after[:w.K])
	w.Last = medianRSS(after[len(after)-w.K:])
	w.Change = (w.Last - w.First) / w.First
	w.Within = w.Change <= tol
	// Least squares: slope = cov(t, rss) / var(t).
	var mt, mr float64
	for _, s := range after {
		mt += s.At.Minutes()
		mr += s.RSSMB
	}
	mt /= float64(len(after))
	mr /= float64(len(after))
	var cov, vt float64
	for _, s := range after {
		dt := s.At.Minutes() - mt
		cov += dt * (s.RSSMB - mr)
		vt += dt * dt
	}
	if vt > 0 {
		w.Slope = cov / vt
	}
	return w, true
}

// medianRSS is the median RSS of samples (MB).
func medianRSS(samples []rssSample) float64 {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = s.RSSMB
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// pauseProxy forwards TCP connections to Redis and can hold every byte in
// both directions for a while: what a hung Redis looks like to the gateway
// (as CLIENT PAUSE would), without pausing a Redis other programs share.
type pauseProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	conns  map[net.Conn]struct{}
}

func newPauseProxy(target string) (*pauseProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pauseProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	return p, nil
}

func (p *pauseProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go p.pipe(u, c)
			p.pipe(c, u)
		}()
	}
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
func (p *pauseProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *pauseProxy) setPaused(v bool) {
	p.mu.Lock()
	p.paused = v
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pauseProxy) close() {
	p.setPaused(false)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// soakResult is what a soak run measured.
type soakResult struct {
	Date, Go, Store string
	Cores           int
	Duration        time.Duration
	Rate            int
	Patients        int
	// Classes counts answers by request kind (read, search, ingest) and
	// class (classify).
	Classes map[string]map[string]int
	// Pauses are the Redis pauses injected; Drops the connections dropped
	// mid-body (DropErrors: those the client could not even send).
	Pauses            []window
	PauseFor          time.Duration
	Drops, DropErrors int
	Start             time.Time
	RSS               []rssSample
	Warmup            time.Duration
	RecordsAcked      int
	RecordsRejected   int
	FirstRejection    string
	// Unexpected describes the first 5xx answers outside the pauses.
	Unexpected         []string
	ResourcesChecked   int
	ResourcesLost      int
	FirstLost          string
	LatP50, LatP99     time.Duration
	Requests           uint64
	Skipped            string
	TokenRenewals      int
	TokenRenewFailures int
}

// Soak runs the soak: a real gateway on a temporary SQLite file (with the
// Redis read cache and shared auth state behind a pausing proxy when cfg
// names Redis; a fresh key prefix, removed afterwards), a fixed rate of mixed
// reads, searches and ingests for p.Duration with faults injected on a
// schedule, RSS sampled throughout, and every acknowledged record's
// resources read back at the end. It prints the report and appends it to
// p.Docs.
func Soak(ctx context.Context, cfg server.Config, p SoakParams, stdout, stderr io.Writer) error {
	res, err := runSoak(ctx, cfg, p, stderr)
	if err != nil {
		return err
	}
	printSoak(stdout, res)
	if p.Docs != "" {
		if err := appendFile(p.Docs, []byte(soakMarkdown(res))); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "appended the soak to %s\n", p.Docs)
	}
	return nil
}

// runSoak runs the soak and returns its figures.
func runSoak(ctx context.Context, cfg server.Config, p SoakParams, stderr io.Writer) (*soakResult, error) {
	cfg.DatabaseURL = ""
	res := &soakResult{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Go: runtime.Version(),
		Cores: runtime.NumCPU(), Duration: p.Duration, Rate: p.Rate, Patients: p.Patients, PauseFor: p.PauseFor}
	var proxy *pauseProxy
	if cfg.RedisURL != "" {
		if why := redisDown(ctx, cfg.RedisURL); why != "" {
			res.Skipped = why + ": no Redis, so no Redis pauses"
			cfg.RedisURL = ""
		}
	} else {
		res.Skipped = "no --redis-url: no Redis, so no Redis pauses"
	}
	if res.Skipped != "" {
		fmt.Fprintln(stderr, "soak:", res.Skipped)
	}
	cfg, cleanup, err := freshNamespace(ctx, cfg, "soak")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if cfg.RedisURL != "" {
		u, err := url.Parse(cfg.RedisURL)
		if err != nil {
			return nil, err
		}
		if proxy, err = newPauseProxy(u.Host); err != nil {
			return nil, err
		}
		defer proxy.close()
		u.Host = proxy.ln.Addr().String()
		cfg.RedisURL, cfg.ReadCache = u.String(), true
	}
	res.Store = storeLabel(cfg)

	fmt.Fprintf(stderr, "soak: synthesising %d + %d patients\n", p.Patients, soakExtraPatients)
	raw, err := server.SynthRecords(p.Patients+soakExtraPatients, p.Seed, server.DemoStart)
	if err != nil {
		return nil, err
	}
	base, stream := splitAtPatient(raw, p.Patients)
	gr, err := startGateway(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer gr.stop()
	if _, sum, err := gr.g.Ingester().Ingest(ctx, base); err != nil || sum.Rejected > 0 {
		return nil, fmt.Errorf("soak: base ingest: %v (%d rejected)", err, sum.Rejected)
	}
	ds, err := datasetFrom(ctx, gr.g.Store(), patientIDs(base), p.Seed)
	if err != nil {
		return nil, err
	}
	const scope = "system/*.rs system/ClinicRecord.write"
	tok, err := newSoakToken(ctx, gr, scope)
	if err != nil {
		return nil, fmt.Errorf("soak: token: %w", err)
	}

	var hdr atomic.Pointer[string]
	bearer := "Bearer " + tok.token
	hdr.Store(&bearer)
	byKey := map[string]json.RawMessage{}
	for _, r := range raw {
		byKey[recordKey(r)] = r
	}
	tg := soakTargeter(ds, gr.base, stream, &hdr, uint64(p.Seed))

	// The load starts from the gateway at rest: the synthesiser's and the
	// base ingest's garbage is handed back to the OS first, and the
	// gateway's memory limit applies from here, as in serve.
	gatewayAtRest(cfg)
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pmu sync.Mutex
	start := time.Now()
	res.Start = start
	res.Warmup = min(time.Minute, p.Duration/5)
	// RSS, every 5 s (more often in short runs).
	every := min(5*time.Second, max(p.Duration/20, 250*time.Millisecond))
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s := rssSample{At: time.Since(start), RSSMB: procStatusMB("VmRSS:"), AnonMB: procStatusMB("RssAnon:"),
				File: procStatusMB("RssFile:"), Goroutines: runtime.NumGoroutine()}
			pmu.Lock()
			res.RSS = append(res.RSS, s)
			pmu.Unlock()
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// The token, renewed every minute (outside the pauses: the token
	// endpoint answers 503 while Redis hangs, and that is retried).
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Half a minute out of phase with the Redis holds.
		select {
		case <-lctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for first := true; ; first = false {
			if !first {
				select {
				case <-lctx.Done():
					return
				case <-t.C:
				}
			}
			for {
				s, err := tok.key.AccessToken(lctx, gr.client, gr.base+"/auth/token", gr.base+"/auth/token", scope)
				pmu.Lock()
				if err == nil {
					res.TokenRenewals++
				} else {
					res.TokenRenewFailures++
				}
				pmu.Unlock()
				if err == nil {
					b := "Bearer " + s
					hdr.Store(&b)
					break
				}
				if lctx.Err() != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}
	}()
	// Redis pauses.
	if proxy != nil && p.PauseEvery > 0 && p.PauseFor > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(p.PauseEvery)
			defer t.Stop()
			for {
				select {
				case <-lctx.Done():
					return
				case <-t.C:
				}
				w := window{from: time.Now()}
				proxy.setPaused(true)
				select {
				case <-lctx.Done():
				case <-time.After(p.PauseFor):
				}
				proxy.setPaused(false)
				w.to = time.Now()
				pmu.Lock()
				res.Pauses = append(res.Pauses, w)
				pmu.Unlock()
			}
		}()
	}
	// Clients that drop their connection halfway through an ingest body.
	if p.DropEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(p.DropEvery)
			defer t.Stop()
			n := 0
			for {
				select {
				case <-lctx.Done():
					return
				case <-t.C:
				}
				body := ndjsonBatch(stream, n*soakBatch, 4*soakBatch)
				n++
				err := dropMidBody(gr.base, *hdr.Load(), body)
				pmu.Lock()
				res.Drops++
				if err != nil {
					res.DropErrors++
				}
				pmu.Unlock()
			}
		}()
	}

	fmt.Fprintf(stderr, "soak: %d requests/s for %s\n", p.Rate, p.Duration)
	atk := vegeta.NewAttacker(vegeta.Workers(8), vegeta.MaxWorkers(256),
		vegeta.KeepAlive(true), vegeta.HTTP2(false), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Timeout(30*time.Second), vegeta.MaxBody(-1))
	var m vegeta.Metrics
	type answer struct {
		kind  string
		code  int
		start time.Time
		lat   time.Duration
	}
	var answers []answer
	type odd struct {
		code       int
		start, lat time.Duration
		kind, body string
	}
	var odds []odd
	acked := map[string]bool{}
	for r := range atk.Attack(tg, vegeta.Rate{Freq: p.Rate, Per: time.Second}, p.Duration, "soak") {
		m.Add(r)
		kind := requestKind(r.Method, r.URL)
		answers = append(answers, answer{kind, int(r.Code), r.Timestamp, r.Latency})
		if r.Code >= 500 && len(odds) < 50 {
			// Kept to name the unexpected ones once the pauses are known:
			// the OperationOutcome's text, which carries no record content.
			odds = append(odds, odd{int(r.Code), r.Timestamp.Sub(start), r.Latency, kind, outcomeText(r.Body)})
		}
		if kind == "ingest" && (r.Code == http.StatusOK || r.Code == http.StatusUnprocessableEntity) {
			var out struct {
				Results []struct {
					Kind, ID, Outcome string
					Errors            []struct{ Path, Message string }
				}
			}
			if json.Unmarshal(r.Body, &out) == nil {
				for _, x := range out.Results {
					if x.Outcome == "rejected" {
						res.RecordsRejected++
						if res.FirstRejection == "" && len(x.Errors) > 0 {
							res.FirstRejection = x.Kind + ": " + x.Errors[0].Path + ": " + x.Errors[0].Message
						}
					} else {
						acked[x.Kind+"/"+x.ID] = true
					}
				}
			}
		}
	}
	m.Close()
	stopLoad()
	wg.Wait()
	res.Requests, res.LatP50, res.LatP99 = m.Requests, m.Latencies.P50, m.Latencies.P99
	res.Classes = map[string]map[string]int{}
	for _, a := range answers {
		c := classify(a.code, a.start, a.lat, res.Pauses)
		if res.Classes[a.kind] == nil {
			res.Classes[a.kind] = map[string]int{}
		}
		res.Classes[a.kind][c]++
	}
	for _, o := range odds {
		if classify(o.code, start.Add(o.start), o.lat, res.Pauses) == classUnexpected {
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s %d at %s (%s after the nearest hold's end, took %s): %s",
				o.kind, o.code, o.start.Round(time.Second), nearestPause(start.Add(o.start), res.Pauses).Round(100*time.Millisecond),
				o.lat.Round(time.Millisecond), o.body))
		}
	}
	res.RSS = append(res.RSS, rssSample{At: time.Since(start), RSSMB: procStatusMB("VmRSS:"),
		AnonMB: procStatusMB("RssAnon:"), File: procStatusMB("RssFile:"), Goroutines: runtime.NumGoroutine()})

	// Every acknowledged record's resources, read back through the API.
	fmt.Fprintf(stderr, "soak: reading back the resources of %d acknowledged records\n", len(acked))
	res.RecordsAcked = len(acked)
	bearer = *hdr.Load()
	if err := readBack(ctx, cfg, gr, bearer, acked, byKey, res); err != nil {
		return nil, err
	}
	return res, nil
}

// outcomeText is the diagnostics of an OperationOutcome body (or its
// first 160 bytes), on one line.
func outcomeText(b []byte) string {
	var oo struct {
		Issue []struct{ Code, Diagnostics string }
	}
	if json.Unmarshal(b, &oo) == nil && len(oo.Issue) > 0 {
		return oo.Issue[0].Code + ": " + oo.Issue[0].Diagnostics
	}
	return strings.Join(strings.Fields(string(b[:min(len(b), 160)])), " ")
}

// nearestPause is the time from the end of the last pause that ended before
// t (negative: t is before every pause's end; 0 without pauses).
func nearestPause(t time.Time, pauses []window) time.Duration {
	var d time.Duration
	for i, w := range pauses {
		if x := t.Sub(w.to); i == 0 || (x >= 0 && (d < 0 || x < d)) {
			d = x
		}
	}
	return d
}

// redisDown says why Redis at u cannot be used ("" when it answers).
func redisDown(ctx context.Context, u string) string {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r, err := redisstore.Open(pctx, u, "ketabridge-probe:")
	if err != nil {
		return "no Redis answers at " + server.RedactURL(u)
	}
	r.Close()
	return ""
}

// soakToken is a backend client's key and its first token.
type soakToken struct {
	key   *auth.BackendKey
	token string
}

// newSoakToken registers a backend client with scope and obtains a token
// through client_credentials.
func newSoakToken(ctx context.Context, gr *gatewayRun, scope string) (*soakToken, error) {
	bk, err := auth.NewBackendKey("ketabridge-soak")
	if err != nil {
		return nil, err
	}
	c, err := bk.Client("KetaBridge soak", scope, time.Now())
	if err != nil {
		return nil, err
	}
	if err := gr.g.RegisterClient(ctx, c); err != nil {
		return nil, err
	}
	aud := gr.base + "/auth/token"
	t, err := bk.AccessToken(ctx, gr.client, aud, aud, scope)
	if err != nil {
		return nil, err
	}
	return &soakToken{key: bk, token: t}, nil
}

// splitAtPatient splits synthesised records before the (n+1)-th Patient
// record: the shared reference records and n patients' records, then the
// rest.
func splitAtPatient(raw []json.RawMessage, n int) (base, rest []json.RawMessage) {
	seen := 0
	for i, r := range raw {
		var h clinic.Header
		if json.Unmarshal(r, &h) == nil && h.Kind == clinic.KindPatient {
			if seen == n {
				return raw[:i], raw[i:]
			}
			seen++
		}
	}
	return raw, nil
}

// recordKey is "kind/id" of a record (as the ingest API's results name it).
func recordKey(r json.RawMessage) string {
	var h clinic.Header
	_ = json.Unmarshal(r, &h)
	return string(h.Kind) + "/" + h.ID
}

// ndjsonBatch is n records of stream from index from (wrapping), as NDJSON.
func ndjsonBatch(stream []json.RawMessage, from, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		b.Write(stream[(from+i)%len(stream)])
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// soakTargeter yields the mixed load: of every 20 requests, 12 reads, 5
// searches and 3 ingests of the next soakBatch records (re-sent from the
// start once all are sent; those come back unchanged).
func soakTargeter(ds *dataset, base string, stream []json.RawMessage, hdr *atomic.Pointer[string], seed uint64) vegeta.Targeter {
	var n, batches atomic.Uint64
	return func(t *vegeta.Target) error {
		i := n.Add(1) - 1
		t.Header = http.Header{"Authorization": {*hdr.Load()}, "Accept": {"application/fhir+json"}}
		t.Body = nil
		switch r := mix(seed, i) % 20; {
		case r < 12:
			t.Method, t.URL = http.MethodGet, base+ds.sample.path(int(mix(seed^11, i)%uint64(ds.sample.len())))
		case r < 17:
			pid := ds.patients[mix(seed^13, i)%uint64(len(ds.patients))]
			t.Method, t.URL = http.MethodGet, base+"/fhir/Observation?patient="+pid+"&code=http://loinc.org|8867-4&_count=50"
		default:
			b := batches.Add(1) - 1
			t.Method, t.URL = http.MethodPost, base+"/internal/v1/records"
			t.Body = ndjsonBatch(stream, int(b)*soakBatch%len(stream), soakBatch)
			t.Header.Set("Content-Type", "application/x-ndjson")
			t.Header.Set("Accept", "application/json")
		}
		return nil
	}
}

// requestKind names a request of the mix from its method and URL.
func requestKind(method, u string) string {
	switch {
	case method == http.MethodPost:
		return "ingest"
	case strings.Contains(u, "?"):
		return "search"
	}
	return "read"
}

// dropMidBody sends an ingest request whose Content-Length promises body,
// writes half of it and closes the connection: a client that goes away
// mid-upload. The gateway must drop the half batch and carry on.
func dropMidBody(base, bearer string, body []byte) error {
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	head := fmt.Sprintf("POST /internal/v1/records HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n"+
		"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n", u.Host, bearer, len(body))
	if _, err := io.WriteString(c, head); err != nil {
		return err
	}
	_, err = c.Write(body[:len(body)/2])
	return err
}

// readBack maps every acknowledged record again (ids are deterministic:
// mapping.ResourceID) and reads each of its resources through the API,
// counting those that do not answer 200.
func readBack(ctx context.Context, cfg server.Config, gr *gatewayRun, bearer string, acked map[string]bool, byKey map[string]json.RawMessage, res *soakResult) error {
	m := mapping.New(mapping.Options{IdentifierSystemBase: cfg.IdentifierSystemBase, Organization: cfg.ClinicOrganization})
	// The records a record references (its patient, course, protocol...),
	// as the gateway's ingest resolves them.
	related := recordResolver{}
	for _, raw := range byKey {
		rec, ferrs := clinic.Decode(raw)
		if len(ferrs) > 0 {
			return fmt.Errorf("soak: decode: %v", ferrs)
		}
		related[clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}] = rec
	}
	var paths []string
	seen := map[string]bool{}
	for key := range acked {
		raw, ok := byKey[key]
		if !ok {
			return fmt.Errorf("soak: the gateway acknowledged %s, which was never sent", key)
		}
		rec, _ := clinic.Decode(raw)
		outs, err := m.MapWith(rec, time.Now(), related)
		if err != nil {
			return fmt.Errorf("soak: map %s: %w", key, err)
		}
		for _, o := range outs {
			if p := "/fhir/" + o.Type + "/" + o.ID; !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	sort.Strings(paths)
	hdr := http.Header{"Authorization": {bearer}, "Accept": {"application/fhir+json"}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(paths) {
					return
				}
				_, status, err := get(ctx, gr.client, gr.base+paths[i], hdr)
				mu.Lock()
				res.ResourcesChecked++
				if err != nil || status != http.StatusOK {
					res.ResourcesLost++
					if res.FirstLost == "" {
						res.FirstLost = fmt.Sprintf("%s: status %d %v", paths[i], status, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if res.ResourcesChecked == 0 && len(acked) > 0 {
		return errors.New("soak: no resource to read back")
	}
	return nil
}

// recordResolver resolves references among the synthesised records.
type recordResolver map[clinic.Key]clinic.Record

func (r recordResolver) Resolve(k clinic.Key) (clinic.Record, bool) {
	rec, ok := r[k]
	return rec, ok
}

// classOrder lists the classes in report order (4xx codes after them).
func classNames(cl map[string]map[string]int) []string {
	set := map[string]bool{}
	for _, m := range cl {
		for c := range m {
			set[c] = true
		}
	}
	order := []string{classOK, classPause503, classUnexpected, classTransport}
	var out []string
	for _, c := range order {
		if set[c] {
			out = append(out, c)
			delete(set, c)
		}
	}
	var rest []string
	for c := range set {
		rest = append(rest, c)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// verdicts are the targets' outcomes: zero unexpected 5xx, zero lost, RSS
// flat.
func (r *soakResult) verdicts() (unexpected int, rss string) {
	for _, m := range r.Classes {
		unexpected += m[classUnexpected]
	}
	w, ok := rssVerdict(r.RSS, r.Warmup, rssTolerance)
	verdict := "not more than 10 % above"
	if !w.Within {
		verdict = "MORE than 10 % above"
	}
	if !ok {
		rss = "fewer than 3 samples after the warm-up"
	} else {
		rss = fmt.Sprintf("median of the last third of the %d samples after the %s warm-up %.0f MB against %.0f MB for the first third (%+.1f %%; %d samples each): %s; least-squares slope %+.2f MB/min",
			w.N, r.Warmup, w.Last, w.First, w.Change*100, w.K, verdict, w.Slope)
	}
	return unexpected, rss
}

func (r *soakResult) table(md bool) string {
	var b strings.Builder
	kinds := []string{"read", "search", "ingest"}
	names := classNames(r.Classes)
	if md {
		b.WriteString("| answers | " + strings.Join(kinds, " | ") + " |\n|---|---|---|---|\n")
	} else {
		fmt.Fprintf(&b, "%-40s %8s %8s %8s\n", "answers", kinds[0], kinds[1], kinds[2])
	}
	for _, c := range names {
		var cells []string
		for _, k := range kinds {
			cells = append(cells, strconv.Itoa(r.Classes[k][c]))
		}
		if md {
			b.WriteString("| " + c + " | " + strings.Join(cells, " | ") + " |\n")
		} else {
			fmt.Fprintf(&b, "%-40s %8s %8s %8s\n", c, cells[0], cells[1], cells[2])
		}
	}
	return b.String()
}

// rssLine lists the RSS samples, at most about a dozen of them.
func (r *soakResult) rssLine() string {
	step := max(1, len(r.RSS)/12)
	var parts []string
	for i, s := range r.RSS {
		if i%step == 0 || i == len(r.RSS)-1 {
			parts = append(parts, fmt.Sprintf("%s %.0f (%d)", s.At.Round(time.Second), s.RSSMB, s.Goroutines))
		}
	}
	return strings.Join(parts, ", ")
}

func (r *soakResult) summary() string {
	var b strings.Builder
	unexpected, rss := r.verdicts()
	fmt.Fprintf(&b, "%d requests at %d/s for %s (p50 %.1f ms, p99 %.1f ms); %d Redis pauses of %s; %d connections dropped mid-body (%d could not be sent).\n",
		r.Requests, r.Rate, r.Duration, float64(r.LatP50)/1e6, float64(r.LatP99)/1e6, len(r.Pauses), r.PauseFor, r.Drops, r.DropErrors)
	fmt.Fprintf(&b, "5xx other than the documented 503s: %d (target 0).\n", unexpected)
	for _, u := range r.Unexpected {
		fmt.Fprintf(&b, "  %s\n", u)
	}
	fmt.Fprintf(&b, "Acknowledged records: %d (and %d record rejections: batches are sent concurrently, so a record can arrive before the one it references, and lands when re-sent", r.RecordsAcked, r.RecordsRejected)
	if r.FirstRejection != "" {
		fmt.Fprintf(&b, ", the first: %s", r.FirstRejection)
	}
	fmt.Fprintf(&b, "); their %d resources read back: %d lost (target 0)", r.ResourcesChecked, r.ResourcesLost)
	if r.FirstLost != "" {
		fmt.Fprintf(&b, "; first: %s", r.FirstLost)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "RSS: %s (target: the end not more than 10 %% above the start).\n", rss)
	if len(r.RSS) > 0 {
		last := r.RSS[len(r.RSS)-1]
		fmt.Fprintf(&b, "RSS over time (time MB (goroutines)): %s; at the end %.0f MB anonymous, %.0f MB file-backed, %d goroutines.\n",
			r.rssLine(), last.AnonMB, last.File, last.Goroutines)
	}
	fmt.Fprintf(&b, "Token renewals: %d (%d attempts refused or failed, retried).\n", r.TokenRenewals, r.TokenRenewFailures)
	if r.Skipped != "" {
		fmt.Fprintf(&b, "Skipped: %s.\n", r.Skipped)
	}
	return b.String()
}

func printSoak(w io.Writer, r *soakResult) {
	fmt.Fprintf(w, "soak: %s, %d base patients, %s, %d cores\n", r.Store, r.Patients, r.Go, r.Cores)
	fmt.Fprint(w, r.table(false))
	fmt.Fprint(w, r.summary())
}

// soakMarkdown is the dated docs section of a run.
func soakMarkdown(r *soakResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s - Soak, %s at %d requests/s, %s, %d cores, %s\n\n", r.Date, r.Duration, r.Rate, r.Store, r.Cores, r.Go)
	fmt.Fprintf(&b, "`ketabridge-bench --soak %s`: %d base patients; of every 20 requests 12 reads, 5 searches and 3 ingests of %d records\n",
		r.Duration, r.Patients, soakBatch)
	b.WriteString("(NDJSON to `POST /internal/v1/records`); faults: Redis held (every byte, both ways) behind a proxy, and clients\n")
	b.WriteString("that send half an ingest body and close. Gateway, SQLite and load generator share the process (RSS is theirs).\n\n")
	b.WriteString(r.table(true))
	b.WriteString("\n")
	for _, l := range strings.Split(strings.TrimSpace(r.summary()), "\n") {
		if rest, ok := strings.CutPrefix(l, "  "); ok {
			b.WriteString("  - " + rest + "\n")
			continue
		}
		b.WriteString("- " + l + "\n")
	}
	return b.String()
}
