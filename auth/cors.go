package auth

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// CORS is the gateway's one CORS policy (SMART App Launch 2.2
// app-launch#considerations-for-cross-origin-resource-sharing-cors-support;
// docs/design/security.md NET-1), for /auth and /fhir:
//
//   - Open: the discovery documents, the JWKS, the SMART style and the
//     CapabilityStatement allow any origin;
//   - Clients: the token, introspection and revocation endpoints and the FHIR
//     API allow only origins some registered client lists
//     (store.Client.Origins). Requests from other origins get no CORS headers
//     (the browser then withholds the response); the endpoints still
//     authenticate every request. If the origin list cannot be read, the
//     request fails (fail closed, PRIV-2) and no CORS headers are sent.
//
// Preflights are answered before authentication (204), allowing the request
// headers SMART apps and FHIR clients send; responses expose the headers they
// read. The registered origins are remembered for OriginCacheTTL on the
// injected clock, so a browser app's requests do not each list the client
// registry. Safe for concurrent use.
type CORS struct {
	clients ClientLister
	clock   store.Clock

	mu      sync.Mutex
	loaded  time.Time
	origins map[string]bool
}

// ClientLister lists the registered clients (the CORS policy reads their
// origins).
type ClientLister interface {
	ListClients(ctx context.Context) ([]store.Client, error)
}

const (
	corsAllowHeaders  = "Authorization, Content-Type, Accept, Prefer, If-None-Match, If-Match"
	corsExposeHeaders = "ETag, Last-Modified, Location, Content-Location, WWW-Authenticate"
	corsMaxAge        = "600"
)

// OriginCacheTTL is how long the registered origins are remembered: an origin
// registered (or removed) is allowed (or refused) within it.
const OriginCacheTTL = 10 * time.Second

// NewCORS returns the policy over the registered clients; a nil clock uses
// the wall clock.
func NewCORS(clients ClientLister, clock store.Clock) *CORS {
	if clock == nil {
		clock = store.SystemClock{}
	}
	return &CORS{clients: clients, clock: clock}
}

// Open allows any origin and answers every OPTIONS request as a preflight. A
// nil CORS sends no CORS headers.
func (p *CORS) Open(next echo.HandlerFunc) echo.HandlerFunc {
	if p == nil {
		return next
	}
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set(echo.HeaderAccessControlAllowOrigin, "*")
		h.Set(echo.HeaderAccessControlExposeHeaders, corsExposeHeaders)
		if c.Request().Method == http.MethodOptions {
			setPreflight(h, "GET, OPTIONS")
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

// Clients allows the origins registered clients list and answers their
// preflights (OPTIONS with Origin and Access-Control-Request-Method). A nil
// CORS sends no CORS headers.
func (p *CORS) Clients(next echo.HandlerFunc) echo.HandlerFunc {
	if p == nil {
		return next
	}
	return func(c echo.Context) error {
		r := c.Request()
		h := c.Response().Header()
		h.Add(echo.HeaderVary, echo.HeaderOrigin)
		origin := r.Header.Get(echo.HeaderOrigin)
		allowed := false
		if origin != "" {
			ok, err := p.allowed(r.Context(), origin)
			if err != nil {
				return err // fail closed: no CORS headers; the surface's renderer answers
			}
			allowed = ok
		}
		if allowed {
			h.Set(echo.HeaderAccessControlAllowOrigin, origin)
			h.Set(echo.HeaderAccessControlExposeHeaders, corsExposeHeaders)
		}
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get(echo.HeaderAccessControlRequestMethod) != "" {
			if allowed {
				setPreflight(h, "GET, POST, OPTIONS")
			}
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

// setPreflight sets the headers of an allowed preflight's answer.
func setPreflight(h http.Header, methods string) {
	h.Set(echo.HeaderAccessControlAllowMethods, methods)
	h.Set(echo.HeaderAccessControlAllowHeaders, corsAllowHeaders)
	h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
}

// allowed reports whether some registered client lists origin, from the
// origins loaded within OriginCacheTTL.
func (p *CORS) allowed(ctx context.Context, origin string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if p.origins == nil || now.Sub(p.loaded) >= OriginCacheTTL {
		if p.clients == nil {
			return false, nil
		}
		clients, err := p.clients.ListClients(ctx)
		if err != nil {
			return false, err
		}
		origins := map[string]bool{}
		for _, cl := range clients {
			for _, o := range cl.Origins {
				origins[o] = true
			}
		}
		p.origins, p.loaded = origins, now
	}
	return p.origins[origin], nil
}

// preflight answers an OPTIONS request Clients let through (no preflight
// headers): 204.
func preflight(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
