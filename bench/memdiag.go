package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// memDiag, when prefix is set, samples the process's memory every 500 ms
// while a scenario runs; the returned func prints the sample taken at the
// highest anonymous RSS and writes the heap profile prefix.<name>.heap
// (--memprofile). The breakdown says what holds the peak: the Go heap in
// use and idle (freed but not yet returned to the OS), the runtime's own
// (stacks, GC metadata), and the anonymous memory outside Go (SQLite's page
// caches and the pure-Go C allocator's slabs), beside the file-backed part
// (the binary). Each sample stops the world briefly (ReadMemStats).
func memDiag(prefix, name string, w io.Writer) func() {
	if prefix == "" {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var best string
		var bestAnon float64
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintf(w, "bench: %s memory at its highest RSS: %s\n", name, best)
				return
			case <-t.C:
			}
			anon, file := rssNowMB()
			if anon <= bestAnon {
				continue
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mb := func(b uint64) float64 { return round1(float64(b) / (1 << 20)) }
			bestAnon = anon
			best = fmt.Sprintf("anon %.1f MB (Go heap in use %.1f, idle not returned %.1f, stacks %.1f, runtime other %.1f; outside Go, about %.1f), file %.1f; next GC at %.1f, %d goroutines",
				anon, mb(m.HeapInuse), mb(m.HeapIdle-m.HeapReleased), mb(m.StackSys), mb(m.Sys-m.HeapSys-m.StackSys),
				round1(anon-float64(m.Sys-m.HeapReleased)/(1<<20)), file, mb(m.NextGC), runtime.NumGoroutine())
		}
	}()
	return func() {
		close(stop)
		<-done
		f, err := os.Create(prefix + "." + name + ".heap")
		if err != nil {
			fmt.Fprintf(w, "bench: %s heap profile: %v\n", name, err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			fmt.Fprintf(w, "bench: %s heap profile: %v\n", name, err)
		}
	}
}
