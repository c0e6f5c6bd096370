package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/ingestapi"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/memory"
)

// ingestScope is the SMART scope the internal ingest API requires.
const ingestScope = ingestapi.Scope

// authState is the SMART side of a running gateway: the authorization server
// and the token verifier the FHIR and ingest APIs check every request with.
type authState struct {
	server *auth.Server
	tokens *auth.Tokens
	eph    store.Ephemeral
}

// openAuth loads (or on first start generates) the signing keys and the
// revocation set from the durable store and builds the authorization server.
func (a *app) openAuth(ctx context.Context) (*authState, error) {
	if a.auth != nil {
		return a.auth, nil
	}
	as, ok := a.store.(store.AuthStore)
	if !ok {
		return nil, fmt.Errorf("the store does not keep auth state")
	}
	clock := store.SystemClock{}
	sealer, err := a.keySealer()
	if err != nil {
		return nil, err
	}
	keys, err := auth.LoadSealedKeySet(ctx, as, clock, sealer)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	// One process keeps codes, launch ids, the jti replay set and throttling
	// in memory; replicas share them (and revocations) through Redis.
	var (
		eph  store.Ephemeral
		revs auth.Revocations
	)
	if a.redis != nil {
		eph = a.redis
		revs, err = auth.NewSharedRevocations(ctx, as, eph, clock)
	} else {
		eph = memory.NewEphemeral(clock)
		revs, err = auth.NewRevocations(ctx, as, clock)
	}
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	srv := auth.New(auth.Options{
		BaseURL:       a.cfg.BaseURL,
		Store:         as,
		Ephemeral:     eph,
		Keys:          keys,
		Patients:      newPatientDirectory(a.store),
		Clock:         clock,
		Logger:        a.log,
		SecureCookies: strings.HasPrefix(a.cfg.BaseURL, "https://"),
	})
	srv.Tokens().SetRevocations(revs)
	a.auth = &authState{server: srv, tokens: srv.Tokens(), eph: eph}
	return a.auth, nil
}

// keySealer is the signing keys' encryption at rest, when configured. A
// shared database without it is allowed but logged: whoever reads the
// database could mint tokens.
func (a *app) keySealer() (*auth.KeySealer, error) {
	if a.cfg.KeyEncryptionKey == nil {
		if a.backend == "postgres" {
			a.log.Warn("signing keys are stored in the database unencrypted; set --key-encryption-key-file on every replica")
		}
		return nil, nil
	}
	return auth.NewKeySealer(a.cfg.KeyEncryptionKey)
}

// fhirCORS is the FHIR API's CORS policy (docs/design/security.md NET-1): the
// CapabilityStatement and the SMART configuration are open to any origin;
// everything else only to origins a registered client lists. Preflights
// (OPTIONS) are answered here, before routing, allowing the Authorization and
// Content-Type headers.
func fhirCORS(st store.AuthStore) echo.MiddlewareFunc {
	origins := &originCache{st: st, ttl: 10 * time.Second}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if !strings.HasPrefix(r.URL.Path, "/fhir/") && r.URL.Path != "/fhir" {
				return next(c)
			}
			origin := r.Header.Get("Origin")
			if origin == "" {
				return next(c)
			}
			h := c.Response().Header()
			h.Add("Vary", "Origin")
			open := r.URL.Path == "/fhir/metadata" || strings.HasPrefix(r.URL.Path, "/fhir/.well-known/")
			allowed := open
			if !allowed {
				ok, err := origins.allowed(r.Context(), origin)
				if err != nil {
					return err // fail closed: no CORS headers, the error renders
				}
				allowed = ok
			}
			if allowed {
				if open {
					h.Set("Access-Control-Allow-Origin", "*")
				} else {
					h.Set("Access-Control-Allow-Origin", origin)
				}
				h.Set("Access-Control-Expose-Headers", "ETag, Last-Modified, Location, Content-Location, WWW-Authenticate")
			}
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				if allowed {
					h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
					h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Prefer, If-None-Match")
					h.Set("Access-Control-Max-Age", "600")
				}
				return c.NoContent(http.StatusNoContent)
			}
			return next(c)
		}
	}
}

// originCache remembers the registered client origins for a short time, so a
// browser app's requests do not each list the client registry.
type originCache struct {
	st  store.AuthStore
	ttl time.Duration

	mu      sync.Mutex
	at      time.Time
	origins []string
}

func (o *originCache) allowed(ctx context.Context, origin string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.at.IsZero() || time.Since(o.at) > o.ttl {
		clients, err := o.st.ListClients(ctx)
		if err != nil {
			return false, err
		}
		o.origins = o.origins[:0]
		for _, cl := range clients {
			o.origins = append(o.origins, cl.Origins...)
		}
		o.at = time.Now()
	}
	return slices.Contains(o.origins, origin), nil
}
