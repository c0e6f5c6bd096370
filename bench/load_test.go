package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
