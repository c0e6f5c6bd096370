package fhir

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/cached"
	"github.com/ketabridge/ketabridge/store/memory"
)

// bundleID is a Bundle's own id (a new UUID on every answer).
var bundleID = regexp.MustCompile(`^\{"resourceType":"Bundle","id":"[0-9a-f-]{36}"`)

// fullStore is the fake store as a store.Store: the methods it lacks (the
// writes, never called here) panic on the nil interface.
type fullStore struct {
	*fakeStore
	nothingElse
}

type nothingElse struct{ store.Store }

// Searches and $everything for two patients, served concurrently through
// the in-process read cache, whose pages the handlers read under a
// store.Lease (docs/design/security.md PERF-ST-18), answer byte for byte
// what the store answers uncached (the Bundle's own id aside): no answer
// carries bytes of a page lent to another request. Run with -race.
func TestLentPagesAnswerTheSame(t *testing.T) {
	uncached := newEnv(t, allowAll)
	env := newEnv(t, allowAll)
	for _, e := range []*testEnv{uncached, env} {
		for i := 1; i <= 25; i++ {
			id := fmt.Sprintf("q%02d", i)
			e.fs.put("Observation", id, "p2", t0.Add(time.Duration(i)*time.Minute), obsBody(id, "p2"), obsRows("p2")...)
		}
	}
	s, err := New(Options{Verifier: allowAll, Store: cached.New(fullStore{fakeStore: env.fs}, memory.NewCache(16<<20), cached.Options{}),
		Base: testBase, Clock: fixedClock{t0.Add(24 * time.Hour)}, BodyLimit: 4096,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	env.e = echo.New()
	s.Register(env.e)
	targets := []string{
		"/fhir/Observation?patient=p1&_count=50", "/fhir/Observation?patient=p2&_count=50",
		"/fhir/Patient/p1/$everything", "/fhir/Patient/p2/$everything",
	}
	norm := func(b []byte) []byte { return bundleID.ReplaceAll(b, []byte(`{"resourceType":"Bundle","id":"-"`)) }
	want := make([][]byte, len(targets))
	for i, target := range targets {
		w := uncached.do("GET", target, "")
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body)
		}
		want[i] = norm(w.Body.Bytes())
		if len(want[i]) < 4096 {
			t.Fatalf("%s: a %d-byte answer is too small to be compressed in the cache, so never lent", target, len(want[i]))
		}
		env.do("GET", target, "") // fills the cache
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				k := (g + i) % len(targets)
				w := env.do("GET", targets[k], "")
				if got := norm(w.Body.Bytes()); w.Code != 200 || !bytes.Equal(got, want[k]) {
					t.Errorf("%s: %d, not the uncached answer:\n%s\nwant\n%s", targets[k], w.Code, got, want[k])
					return
				}
			}
		})
	}
	wg.Wait()
}
