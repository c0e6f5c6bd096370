package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/fhir/bulkclient"
)

// exportName is the export scenario's name (ScenarioNames).
const exportName = "export"

// exportInfo is the export scenario's figures (results.json "export"): a
// system-level Bulk Data export of the whole data set by the benchmark's
// backend client, timed from the kick-off to the last byte downloaded.
type exportInfo struct {
	// ResourcesPerS is Resources over Seconds.
	ResourcesPerS float64 `json:"resources_per_s"`
	Resources     int     `json:"resources"`
	Files         int     `json:"files"`
	Bytes         int64   `json:"bytes"`
	// Seconds is the wall time from the kick-off request to the last byte
	// of the last file; JobSeconds the part until the manifest came.
	Seconds    float64 `json:"seconds"`
	JobSeconds float64 `json:"job_seconds"`
	// PeakRSSMB is the process's peak RSS during the export (VmHWM, reset
	// before it where the kernel allows).
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// PeakParts is what the RSS held at its highest sample (every 50 ms).
	PeakParts *rssParts `json:"peak_parts,omitempty"`
	// Load1 is the machine's one-minute load average at the end.
	Load1 float64 `json:"load1,omitempty"`
	// CPUSeconds is the process's CPU time (user and system) over the
	// export, the gateway's and the downloading client's together, and
	// ResourcesPerCPUS Resources over it: on shared cores the wall figure
	// says as much about the other jobs as about the export.
	CPUSeconds       float64 `json:"cpu_seconds,omitempty"`
	ResourcesPerCPUS float64 `json:"resources_per_cpu_s,omitempty"`
}

// runExport kicks off a system export with the benchmark's token, polls
// its status, downloads every file as a bulk client does (each line read
// and counted; the counts must match the manifest's) and measures it.
func runExport(ctx context.Context, gr *gatewayRun) (*exportInfo, error) {
	debug.FreeOSMemory()
	resetPeakRSS()
	c := &bulkclient.Client{
		// No overall timeout: a file streams as long as it takes.
		HTTP:  &http.Client{Transport: exportTransport()},
		Token: tokenCache(gr.freshToken),
		// Poll at the client's pace, not the server's Retry-After (whole
		// seconds): the figure is the export's time, not the interval's.
		MinPoll: 20 * time.Millisecond, MaxPoll: 20 * time.Millisecond,
	}
	stopSampling := sampleRSS()
	start, cpu0 := time.Now(), cpuSeconds()
	status, err := c.Kickoff(ctx, bulkclient.Request{Base: gr.base + "/fhir"})
	if err != nil {
		return nil, fmt.Errorf("kick-off: %w", err)
	}
	m, err := c.Wait(ctx, status)
	if err != nil {
		return nil, err
	}
	job := time.Since(start)
	info := &exportInfo{}
	// The files are downloaded exportDownloads at a time, as bulk clients
	// do (the files are independent; each download is a walk of the store
	// on the gateway's side, so two or more use both cores).
	var mu sync.Mutex
	var firstErr error
	next := make(chan bulkclient.Output)
	var wg sync.WaitGroup
	for range exportDownloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range next {
				lines, n, err := download(ctx, c, o.URL)
				if err == nil && lines != o.Count {
					err = fmt.Errorf("%d lines, the manifest says %d", lines, o.Count)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("download %s file: %w", o.Type, err)
				}
				info.Resources += lines
				info.Bytes += n
				info.Files++
				mu.Unlock()
			}
		}()
	}
	for _, o := range m.Output {
		next <- o
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	took, cpu := time.Since(start), cpuSeconds()-cpu0
	if len(m.Error) > 0 || len(m.Deleted) > 0 {
		return nil, fmt.Errorf("the export has %d error and %d deleted files, want none", len(m.Error), len(m.Deleted))
	}
	if info.Resources == 0 {
		return nil, errors.New("the export holds no resource")
	}
	info.Seconds, info.JobSeconds = round3(took.Seconds()), round3(job.Seconds())
	info.ResourcesPerS = round1(float64(info.Resources) / took.Seconds())
	info.PeakRSSMB = peakRSSMB()
	info.PeakParts = stopSampling()
	info.Load1 = loadAverage()
	if cpu > 0 {
		info.CPUSeconds = round3(cpu)
		info.ResourcesPerCPUS = round1(float64(info.Resources) / cpu)
	}
	if err := c.Delete(ctx, status); err != nil {
		return nil, fmt.Errorf("releasing the export: %w", err)
	}
	return info, nil
}

// rssParts splits a sample of the process's RSS: file-backed pages (the
// binary), the Go runtime's memory not returned to the OS (heap, stacks,
// its metadata), of which the heap live at the last collection, and the
// anonymous rest (SQLite's page caches and allocations, in the pure-Go
// SQLite's own allocator).
type rssParts struct {
	RSSMB      float64 `json:"rss_mb"`
	FileMB     float64 `json:"file_mb"`
	GoMB       float64 `json:"go_mb"`
	HeapLiveMB float64 `json:"heap_live_mb"`
	// HeapGoalMB is the collector's heap goal then, and HeapFreeMB the
	// heap's free pages not yet returned to the OS.
	HeapGoalMB float64 `json:"heap_goal_mb"`
	HeapFreeMB float64 `json:"heap_free_mb"`
	OtherMB    float64 `json:"other_anon_mb"`
}

// sampleRSS samples the RSS every 50 ms until the returned function is
// called, which returns the parts of the highest sample.
func sampleRSS() func() *rssParts {
	done := make(chan struct{})
	out := make(chan *rssParts, 1)
	go func() {
		var peak *rssParts
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"},
			{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
		mb := func(i int) float64 { return round1(float64(samples[i].Value.Uint64()) / (1 << 20)) }
		for {
			anon, file := rssNowMB()
			if peak == nil || anon+file > peak.RSSMB {
				metrics.Read(samples)
				goMB := float64(samples[0].Value.Uint64()-samples[1].Value.Uint64()) / (1 << 20)
				peak = &rssParts{RSSMB: round1(anon + file), FileMB: round1(file), GoMB: round1(goMB),
					HeapLiveMB: mb(2), HeapGoalMB: mb(3), HeapFreeMB: mb(4), OtherMB: round1(max(0, anon-goMB))}
			}
			select {
			case <-done:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() *rssParts {
		close(done)
		return <-out
	}
}

// exportDownloads is how many files the export scenario downloads at once:
// as many as `ketabridge export` does by default (two).
const exportDownloads = bulkclient.DefaultParallel

// download reads one file to the end and returns its lines and bytes.
func download(ctx context.Context, c *bulkclient.Client, url string) (int, int64, error) {
	body, err := c.Open(ctx, url)
	if err != nil {
		return 0, 0, err
	}
	defer body.Close()
	var lines int
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := body.Read(buf)
		n += int64(k)
		lines += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return lines, n, nil
		}
		if err != nil {
			return lines, n, err
		}
	}
}

// exportTransport is the download client's transport: files come
// uncompressed (on loopback gzip would only spend the shared cores; the
// gateway compresses when asked, docs/bulk-export.md), read through
// bulkclient.Transport's 256 KiB buffer.
func exportTransport() *http.Transport {
	t := bulkclient.Transport()
	t.DisableCompression = true
	return t
}

// tokenCache reuses a token for two minutes (backend tokens live five).
func tokenCache(get func(context.Context) (string, error)) func(context.Context) (string, error) {
	var tok string
	var at time.Time
	return func(ctx context.Context) (string, error) {
		if tok != "" && time.Since(at) < 2*time.Minute {
			return tok, nil
		}
		t, err := get(ctx)
		if err != nil {
			return "", err
		}
		tok, at = t, time.Now()
		return tok, nil
	}
}

// loadAverage is the machine's one-minute load average (0 where
// /proc/loadavg is not available).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
