package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// waitTraceFor is how much of each scenario --waitprofile traces.
const waitTraceFor = 3 * time.Second

// waitMetrics are the runtime's counters of waiting read around a
// scenario (PERF-ST-14): the stop-the-world pauses of the collector, the
// time runnable goroutines waited for a P (the two shared cores), the
// collector's CPU and the share of it charged to the request goroutines
// as mark assists, and the time goroutines waited on sync.Mutex.
var waitMetrics = []string{
	"/sched/pauses/total/gc:seconds",
	"/sched/latencies:seconds",
	"/cpu/classes/gc/mark/assist:cpu-seconds",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/idle:cpu-seconds",
	"/gc/cycles/total:gc-cycles",
	"/sync/mutex/wait/total:seconds",
}

// waitDiag, when prefix is set (--waitprofile), turns on the block and
// mutex profiles for the scenario, records a runtime trace of its first
// seconds, and returns a func that writes prefix.<name>.block, .mutex and
// .trace and prints the scenario's waiting by the runtime's metrics, per
// request. A diagnostic only: the profiles' sampling costs some CPU, so
// runs with it are not compared against runs without.
func waitDiag(prefix, name string, w io.Writer) func(requests uint64) {
	if prefix == "" {
		return func(uint64) {}
	}
	runtime.SetBlockProfileRate(10_000) // one event per 10 us blocked
	runtime.SetMutexProfileFraction(10)
	before := make([]metrics.Sample, len(waitMetrics))
	for i, n := range waitMetrics {
		before[i].Name = n
	}
	metrics.Read(before)
	var tf *os.File
	stopTrace := make(chan struct{})
	traced := make(chan struct{})
	if f, err := os.Create(prefix + "." + name + ".trace"); err == nil && trace.Start(f) == nil {
		tf = f
		go func() {
			defer close(traced)
			select {
			case <-time.After(waitTraceFor):
			case <-stopTrace:
			}
			trace.Stop()
			tf.Close()
		}()
	} else {
		close(traced)
		fmt.Fprintf(w, "bench: %s trace: %v\n", name, err)
	}
	return func(requests uint64) {
		close(stopTrace)
		<-traced
		after := make([]metrics.Sample, len(waitMetrics))
		for i, n := range waitMetrics {
			after[i].Name = n
		}
		metrics.Read(after)
		for _, p := range []string{"block", "mutex"} {
			if f, err := os.Create(prefix + "." + name + "." + p); err == nil {
				_ = pprof.Lookup(p).WriteTo(f, 0)
				f.Close()
			}
		}
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
		// The profiles are cumulative: each file holds this scenario and
		// those run before it with --waitprofile.
		f := func(i int) float64 { return after[i].Value.Float64() - before[i].Value.Float64() }
		pauses := histDelta(before[0].Value.Float64Histogram(), after[0].Value.Float64Histogram())
		sched := histDelta(before[1].Value.Float64Histogram(), after[1].Value.Float64Histogram())
		us := func(s float64) float64 { return round1(s * 1e6) }
		per := func(s float64) float64 {
			if requests == 0 {
				return 0
			}
			return round1(s * 1e6 / float64(requests))
		}
		fmt.Fprintf(w, "bench: %s waiting: GC cycles %d, GC pauses n=%d p99 %.1f us max %.1f us total %.1f ms; "+
			"runnable waiting for a P n=%d p50 %.1f us p99 %.1f us p99.9 %.1f us max %.1f us; "+
			"GC CPU %.1f us/request of which assist %.1f, cores idle %.1f us/request; mutex wait %.1f us/request\n",
			name, after[5].Value.Uint64()-before[5].Value.Uint64(),
			pauses.n, us(pauses.q(0.99)), us(pauses.max), round1(pauses.sum*1e3),
			sched.n, us(sched.q(0.50)), us(sched.q(0.99)), us(sched.q(0.999)), us(sched.max),
			per(f(3)), per(f(2)), per(f(4)), per(f(6)))
	}
}

// hist is a histogram's difference between two reads.
type hist struct {
	counts  []uint64
	buckets []float64
	n       uint64
	sum     float64
	max     float64
}

func histDelta(a, b *metrics.Float64Histogram) hist {
	h := hist{counts: make([]uint64, len(b.Counts)), buckets: b.Buckets}
	for i := range b.Counts {
		c := b.Counts[i] - a.Counts[i]
		h.counts[i] = c
		h.n += c
		if c == 0 {
			continue
		}
		lo, hi := b.Buckets[i], b.Buckets[i+1]
		if hi > 1e300 {
			hi = lo
		}
		if lo < -1e300 {
			lo = hi
		}
		h.sum += float64(c) * (lo + hi) / 2
		h.max = hi
	}
	return h
}

// q returns the upper bound of the bucket holding the q-quantile (the
// lower bound of the open last bucket).
func (h hist) q(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > want {
			if hi := h.buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return h.buckets[i] // the open last bucket: its lower bound
		}
	}
	return h.max
}

// handlerBuckets reads the gateway's own request latency histogram
// (ops.Metrics, ketabridge_http_request_duration_seconds on /metrics),
// summed over routes: cumulative counts by upper bound in seconds. It
// times the handler chain only, from the request read to the response
// written, without the load generator's side or the wait before the
// handler runs.
func handlerBuckets(ctx context.Context, c *http.Client, base string) (map[string]float64, error) {
	b, status, err := get(ctx, c, base+"/metrics", http.Header{})
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("bench: /metrics: status %d: %v", status, err)
	}
	out := map[string]float64{}
	const name = "ketabridge_http_request_duration_seconds_bucket{"
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < i {
			continue
		}
		le := line[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		v, err := strconv.ParseFloat(line[j+1:], 64)
		if err != nil {
			continue
		}
		out[le] += v
	}
	return out, nil
}

// printHandlerTail prints the share of the scenario's requests whose
// handler took longer than each bound (the difference of two
// handlerBuckets reads).
func printHandlerTail(w io.Writer, name string, before, after map[string]float64) {
	n := after["+Inf"] - before["+Inf"]
	if n <= 0 {
		return
	}
	var sb strings.Builder
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05"} {
		over := n - (after[le] - before[le])
		fmt.Fprintf(&sb, " over %s ms %.2f %%;", strconv.FormatFloat(mustFloat(le)*1e3, 'f', -1, 64), 100*over/n)
	}
	fmt.Fprintf(w, "bench: %s in the gateway's handlers (its own histogram, %d requests):%s\n", name, int64(n), sb.String())
}

func mustFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}
