package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The warm-up asks for each distinct answer of the scenario exactly once,
// and a refused request fails it rather than leaving a cold cache behind
// unnoticed.
func TestWarmUp(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	fail := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query().Get("patient")
		mu.Lock()
		seen[p]++
		refuse := p == fail
		mu.Unlock()
		if refuse {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	keys := []string{"a", "b", "c", "d", "e", "f", "g"}
	sc := scenario{name: "search", base: srv.URL, keys: keys, warm: func(j int) string { return searchPath(keys[j]) }}
	n, _, err := warmUp(context.Background(), sc, srv.Client(), 3)
	if err != nil || n != len(keys) {
		t.Fatalf("warmUp = %d, %v; want %d, nil", n, err, len(keys))
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Errorf("patient %s requested %d times, want once: %v", k, seen[k], seen)
		}
	}

	mu.Lock()
	fail = "d"
	mu.Unlock()
	if _, _, err := warmUp(context.Background(), sc, srv.Client(), 3); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a refused warm-up request: err = %v, want the status", err)
	}
	// A scenario without keys is not warmed.
	if n, _, err := warmUp(context.Background(), scenario{name: "everything", base: srv.URL}, srv.Client(), 3); n != 0 || err != nil {
		t.Errorf("no keys: %d, %v", n, err)
	}
}

// The load generator's own client (loadClient, PERF-ST-15) changes only how
// the client reads: the same request bytes (method, path, protocol, every
// header) as vegeta's default client, on as many keep-alive connections,
// and a chunked 650 KB answer is read whole.
func TestLoadClientWireUnchanged(t *testing.T) {
	type seen struct {
		heads []string
		conns map[string]bool
		bytes int64
	}
	var mu sync.Mutex
	var cur *seen
	body := strings.Repeat(`{"resourceType":"Observation"},`, 21000) // ~650 KB, chunked
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := httputil.DumpRequest(r, false)
		if err != nil {
			t.Error(err)
		}
		// vegeta numbers its requests (X-Vegeta-Seq); the rest must match.
		head := regexp.MustCompile(`(?m)^X-Vegeta-Seq: \d+\r\n`).ReplaceAllString(string(raw), "")
		mu.Lock()
		cur.heads = append(cur.heads, head)
		cur.conns[r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		for i := 0; i < len(body); i += 64 << 10 {
			_, _ = io.WriteString(w, body[i:min(len(body), i+64<<10)])
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	hdr := http.Header{"Accept": {"application/fhir+json"}, "Authorization": {"Bearer x"}}
	run := func(client bool) *seen {
		cur = &seen{conns: map[string]bool{}}
		opts := []func(*vegeta.Attacker){
			vegeta.Workers(2), vegeta.MaxWorkers(2), vegeta.Connections(2), vegeta.MaxConnections(2),
			vegeta.KeepAlive(true), vegeta.HTTP2(false), vegeta.Redirects(vegeta.NoFollow),
			vegeta.Timeout(30 * time.Second), vegeta.MaxBody(0),
		}
		if client {
			opts = append([]func(*vegeta.Attacker){vegeta.Client(loadClient())}, opts...)
		}
		atk := vegeta.NewAttacker(opts...)
		tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: srv.URL + "/fhir/Patient/p1/$everything?_count=500", Header: hdr})
		for r := range atk.Attack(tr, vegeta.ConstantPacer{Freq: 40, Per: time.Second}, 500*time.Millisecond, "t") {
			if r.Code != 200 || r.Error != "" {
				t.Fatalf("status %d %s", r.Code, r.Error)
			}
		}
		srv.CloseClientConnections()
		return cur
	}
	def, own := run(false), run(true)
	if len(def.heads) == 0 || len(own.heads) == 0 {
		t.Fatal("no requests")
	}
	for _, h := range own.heads {
		if h != def.heads[0] {
			t.Fatalf("request with loadClient:\n%s\nwith vegeta's client:\n%s", h, def.heads[0])
		}
	}
	if len(own.conns) > 2 || len(def.conns) > 2 {
		t.Errorf("connections: loadClient %d, vegeta's %d; want at most 2 each (keep-alive)", len(own.conns), len(def.conns))
	}
}

// TestAttackClosesItsConnections: a scenario's keep-alive connections are
// closed when it ends (docs/design/security.md PERF-ST-16), so the next
// scenario's peak RSS does not carry them (the gateway's goroutine, buffers
// and stack for each, the client's two). The server counts its
// connections open; closing is seen by it asynchronously, so the test waits
// for the count to reach zero (a condition, not a time limit: it fails only
// when the connections stay open).
func TestAttackClosesItsConnections(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	sc := scenario{name: "read-hot", base: srv.URL, path: func(uint64) string { return "/x" }}
	r, err := attackScenario(sc, 4, 0, 200*time.Millisecond, "", "", io.Discard)
	if err != nil || r.requests == 0 {
		t.Fatalf("attack: %d requests, %v", r.requests, err)
	}
	for i := 0; open.Load() > 0; i++ {
		if i == 1000 {
			t.Fatalf("%d connections still open after the scenario", open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
