package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
