package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// corsClients is a ClientLister whose clients and failure the test sets;
// it counts the listings.
type corsClients struct {
	mu      sync.Mutex
	clients []store.Client
	fail    error
	lists   int
}

func (l *corsClients) ListClients(context.Context) ([]store.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
	return l.clients, l.fail
}

func (l *corsClients) set(clients []store.Client, fail error) {
	l.mu.Lock()
	l.clients, l.fail = clients, fail
	l.mu.Unlock()
}

// corsRequest runs one request through mw (a CORS middleware) to a handler
// answering 200; it returns the response and whether the handler ran.
func corsRequest(mw echo.MiddlewareFunc, method, origin, reqMethod string) (*httptest.ResponseRecorder, bool, error) {
	ran := false
	h := mw(func(c echo.Context) error { ran = true; return c.NoContent(http.StatusOK) })
	req := httptest.NewRequest(method, "/fhir/Patient", nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if reqMethod != "" {
		req.Header.Set("Access-Control-Request-Method", reqMethod)
	}
	w := httptest.NewRecorder()
	err := h(echo.New().NewContext(req, w))
	return w, ran, err
}

// TestCORS covers docs/design/security.md NET-1: open documents allow any
// origin; the client endpoints and the FHIR API only registered origins; a
// preflight is answered without reaching the handler (or authentication).
func TestCORS(t *testing.T) {
	const app = "https://app.example"
	lister := &corsClients{clients: []store.Client{{ID: "a", Origins: []string{app}}, {ID: "b"}}}
	p := NewCORS(lister, nil)
	tests := []struct {
		name               string
		mw                 echo.MiddlewareFunc
		method, origin, rm string
		status             int
		ran                bool
		allowOrigin        string
		preflight          bool
	}{
		{name: "open GET", mw: p.Open, method: "GET", origin: "https://any.example", status: 200, ran: true, allowOrigin: "*"},
		{name: "open GET without Origin", mw: p.Open, method: "GET", status: 200, ran: true, allowOrigin: "*"},
		{name: "open preflight", mw: p.Open, method: "OPTIONS", origin: "https://any.example", rm: "GET", status: 204, allowOrigin: "*", preflight: true},
		{name: "registered origin", mw: p.Clients, method: "GET", origin: app, status: 200, ran: true, allowOrigin: app},
		{name: "registered origin preflight", mw: p.Clients, method: "OPTIONS", origin: app, rm: "POST", status: 204, allowOrigin: app, preflight: true},
		{name: "foreign origin", mw: p.Clients, method: "GET", origin: "https://evil.example", status: 200, ran: true},
		{name: "foreign origin preflight", mw: p.Clients, method: "OPTIONS", origin: "https://evil.example", rm: "GET", status: 204},
		{name: "no Origin", mw: p.Clients, method: "GET", status: 200, ran: true},
		{name: "OPTIONS that is not a preflight", mw: p.Clients, method: "OPTIONS", origin: app, status: 200, ran: true, allowOrigin: app},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, ran, err := corsRequest(tc.mw, tc.method, tc.origin, tc.rm)
			if err != nil || w.Code != tc.status || ran != tc.ran {
				t.Fatalf("status %d, handler ran %v, err %v", w.Code, ran, err)
			}
			h := w.Header()
			if got := h.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
				t.Errorf("Allow-Origin = %q, want %q", got, tc.allowOrigin)
			}
			if tc.allowOrigin != "" && h.Get("Access-Control-Expose-Headers") != corsExposeHeaders {
				t.Errorf("Expose-Headers = %q", h.Get("Access-Control-Expose-Headers"))
			}
			if got := h.Get("Access-Control-Allow-Headers"); (got == corsAllowHeaders) != tc.preflight {
				t.Errorf("Allow-Headers = %q", got)
			}
			if tc.allowOrigin != "" && tc.allowOrigin != "*" && h.Get("Vary") != "Origin" {
				t.Errorf("Vary = %q", h.Get("Vary"))
			}
		})
	}
	t.Run("a nil policy sends nothing", func(t *testing.T) {
		var none *CORS
		for _, mw := range []echo.MiddlewareFunc{none.Open, none.Clients} {
			w, ran, err := corsRequest(mw, "OPTIONS", app, "GET")
			if err != nil || !ran || w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("ran %v, err %v, headers %v", ran, err, w.Header())
			}
		}
	})
}

// TestCORSOriginCache: the registered origins are read once per
// OriginCacheTTL on the injected clock; a failure to read them fails the
// request without CORS headers (docs/design/security.md NET-1, PRIV-2).
func TestCORSOriginCache(t *testing.T) {
	const app, late = "https://app.example", "https://late.example"
	clock := &tdClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	lister := &corsClients{clients: []store.Client{{ID: "a", Origins: []string{app}}}}
	p := NewCORS(lister, clock)
	allowed := func(origin string) (bool, error) {
		w, _, err := corsRequest(p.Clients, "GET", origin, "")
		return w.Header().Get("Access-Control-Allow-Origin") == origin, err
	}
	if ok, err := allowed(app); !ok || err != nil {
		t.Fatalf("registered origin: %v %v", ok, err)
	}
	lister.set([]store.Client{{ID: "a", Origins: []string{app}}, {ID: "b", Origins: []string{late}}}, nil)
	clock.Add(OriginCacheTTL - time.Nanosecond)
	if ok, _ := allowed(late); ok {
		t.Error("an origin registered within the TTL is allowed before the cache expires")
	}
	clock.Add(time.Nanosecond)
	if ok, err := allowed(late); !ok || err != nil {
		t.Errorf("after the TTL: %v %v", ok, err)
	}
	if lister.lists != 2 {
		t.Errorf("%d listings, want 2", lister.lists)
	}

	down := errors.New("client registry unreachable")
	lister.set(nil, down)
	clock.Add(OriginCacheTTL)
	w, ran, err := corsRequest(p.Clients, "GET", app, "")
	if !errors.Is(err, down) || ran || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("listing fails: err %v, ran %v, headers %v", err, ran, w.Header())
	}
	lister.set([]store.Client{{ID: "a", Origins: []string{app}}}, nil)
	if ok, err := allowed(app); !ok || err != nil {
		t.Errorf("after the registry is back: %v %v", ok, err)
	}
}
