// Package fhir is KetaBridge's FHIR R4 REST surface on Echo: read, vread,
// instance history, search (parsed by fhir/search before the store sees it),
// searchset and history Bundles with paging, _include/_revinclude,
// Patient/$everything, the CapabilityStatement, content negotiation, ETags,
// and one error renderer that answers every failure with an OperationOutcome.
//
// The API is read-only (ingest is separate). Every data route authenticates
// the caller first (auth.Authenticate), and every data access passes the
// caller's access decision (auth.Decide) before the store is queried.
package fhir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Defaults for Options.
const (
	DefaultBodyLimit = 1 << 20
	DefaultTimeout   = 30 * time.Second
)

// Reader is the storage the FHIR API reads, declared here by its consumer and
// no larger than it needs: the read interactions of store.Store (whose
// comments cite the spec section of each). Every backend and the read cache
// implement it.
type Reader interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
	VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error)
	History(ctx context.Context, typ, id string, count, offset int) ([]store.Resource, int, error)
	GetMany(ctx context.Context, keys []store.Key) ([]store.Resource, error)
	Search(ctx context.Context, q store.Query) (store.SearchResult, error)
	Refs(ctx context.Context, from []store.Key, params []string) ([]store.Ref, error)
	Everything(ctx context.Context, q store.EverythingQuery) ([]store.Resource, int, error)
}

var _ Reader = store.Store(nil)

// Options configure a Server.
type Options struct {
	// Store is what the API reads.
	Store Reader
	// Base is the FHIR base URL clients use, e.g. http://localhost:8080/fhir;
	// fullUrls, paging links and implementation.url are built from it.
	Base string
	// Verifier verifies the bearer tokens of every route but metadata
	// (auth.Authenticate); nil refuses every such request with 401.
	Verifier auth.Verifier
	// RateLimit, when set, limits each client's requests, charged right
	// after authentication and before anything else (see RateLimit).
	RateLimit *RateLimit
	// CORS is the gateway's CORS policy (docs/design/security.md NET-1):
	// any origin for metadata, registered client origins for the rest. nil
	// sends no CORS headers.
	CORS *auth.CORS
	// Logger receives the access log; nil uses slog.Default().
	Logger *slog.Logger
	// Clock stamps Bundle meta.lastUpdated; nil uses the wall clock.
	Clock store.Clock
	// BodyLimit caps request bodies in bytes (default DefaultBodyLimit).
	BodyLimit int64
	// Timeout caps each request (default DefaultTimeout).
	Timeout time.Duration
	// Version is the software version in the CapabilityStatement ("dev" if empty).
	Version string
	// Auditor receives an Event for every access to patient data (see
	// Event). nil disables auditing, which is only for unit tests of other
	// behaviour: cmd/ketabridge always passes one (fhir/auditlog.Writer),
	// as every access to patient data must write an AuditEvent
	// (docs/design/security.md PRIV-8).
	Auditor Auditor
	// Profiles lists, per resource type, the profiles the gateway claims in
	// the CapabilityStatement (supportedProfile); nil uses USCoreProfiles.
	Profiles map[string][]string
	// Writer, with Clients, turns on the referral write path
	// (docs/referrals.md): the transaction Bundle at POST [base] and Task
	// updates. nil keeps the API read-only (405).
	Writer Writer
	// Clients tells the organization and role each client is registered
	// with; required with Writer.
	Clients Clients
	// IdentifierSystemBase is the clinic's identifier namespace (the
	// mapper's, server Config.IdentifierSystemBase): the PAS request's
	// identifiers are {base}/pas-request. Empty: the default base.
	IdentifierSystemBase string
	// OAuth names the authorization server's endpoints in the
	// CapabilityStatement (rest.security, SMART oauth-uris). nil derives
	// the gateway's own from Base, which must then be {root}/fhir: the
	// authorization server is at {root}/auth.
	OAuth *OAuthEndpoints
	// Export serves Bulk Data $export (docs/bulk-export.md); nil leaves it
	// unserved. RunExports must run for jobs to finish.
	Export *ExportOptions
	// Disclosure holds the disclosure settings of the outside views
	// (docs/access.md): the zero value is the strict default.
	Disclosure auth.DisclosurePolicy
	// Documentation is the CapabilityStatement's rest.documentation
	// (markdown): what else the gateway serves on this API, such as its
	// own SMART apps. Empty: none.
	Documentation string
}

// Server serves the FHIR API. Create it with New and mount it with Register.
type Server struct {
	store Reader
	base  string
	// baseJSON is base escaped for the inside of a JSON string, once: every
	// Bundle entry's fullUrl starts with it (docs/design/security.md
	// PERF-ST-15).
	baseJSON string
	// everythingNames are the served types in $everything's order, Patient
	// first, then by name (everythingPlan; PERF-ST-15).
	everythingNames []string
	verifier        auth.Verifier
	rateLimit       *RateLimit
	cors            *auth.CORS
	auditor         Auditor
	log             *slog.Logger
	clock           store.Clock
	bodyLimit       int64
	timeout         time.Duration
	types           map[string]bool
	capability      []byte
	export          *ExportOptions
	exportWake      chan struct{}
	disclosure      auth.DisclosurePolicy
	facts           factsMemo    // parsed Consent and Coverage versions (disclosure.go)
	decisions       decisionMemo // disclosure decisions while they hold (disclosure.go)
	writer          Writer
	clients         Clients
	// identifierBase is Options.IdentifierSystemBase.
	identifierBase string
}

// New validates opts and builds a Server, including the CapabilityStatement
// bytes it serves at /metadata.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("fhir: Options.Store is required")
	}
	u, err := url.Parse(opts.Base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("fhir: Options.Base must be an absolute http(s) URL without query")
	}
	s := &Server{
		store:          opts.Store,
		base:           strings.TrimSuffix(opts.Base, "/"),
		verifier:       opts.Verifier,
		rateLimit:      opts.RateLimit,
		cors:           opts.CORS,
		auditor:        opts.Auditor,
		log:            opts.Logger,
		clock:          opts.Clock,
		bodyLimit:      opts.BodyLimit,
		timeout:        opts.Timeout,
		types:          map[string]bool{},
		disclosure:     opts.Disclosure,
		writer:         opts.Writer,
		clients:        opts.Clients,
		identifierBase: opts.IdentifierSystemBase,
	}
	if (s.writer == nil) != (s.clients == nil) {
		return nil, errors.New("fhir: Options.Writer and Options.Clients go together")
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.Export != nil {
		if opts.Export.Store == nil {
			return nil, errors.New("fhir: Options.Export.Store is required")
		}
		s.export = opts.Export.withDefaults()
		s.exportWake = make(chan struct{}, 1)
		s.types["Group"] = true // derived cohorts (groups.go)
	}
	if s.clock == nil {
		s.clock = store.SystemClock{}
	}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	for _, t := range search.Types() {
		s.types[t] = true
	}
	s.baseJSON = string(appendEscaped(nil, s.base))
	s.everythingNames = everythingOrder(s.types)
	profiles := opts.Profiles
	if profiles == nil {
		profiles = USCoreProfiles
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	oauth, derived := gatewayOAuth(s.base)
	if opts.OAuth != nil {
		oauth = *opts.OAuth
	} else if !derived {
		return nil, errors.New("fhir: Options.OAuth is required when Base does not end in /fhir")
	}
	if !oauth.valid() {
		return nil, errors.New("fhir: Options.OAuth must name four absolute http(s) URLs")
	}
	s.capability, err = buildCapabilityStatement(capabilityInput{
		base: s.base, version: version, now: s.clock.Now(), profiles: profiles, oauth: oauth,
		bulkExport:    s.export != nil,
		documentation: opts.Documentation,
		referrals:     s.writer != nil,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Register mounts the API under /fhir on e and installs the /fhir branch of
// e's HTTPErrorHandler (other paths keep the previous handler).
func (s *Server) Register(e *echo.Echo) {
	prev := e.HTTPErrorHandler
	if prev == nil {
		prev = e.DefaultHTTPErrorHandler
	}
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if isFHIRPath(c.Request().URL.Path) {
			renderError(c, err)
			return
		}
		prev(err, c)
	}

	// The middleware chain is composed once per route here rather than by
	// group middleware, which echo v4 re-applies on every request. Each data
	// route names the interaction it serves, for the audit trail of requests
	// refused before the handler runs.
	g := e.Group("/fhir")
	// HEAD is served wherever GET is (http.html, RFC 9110 §9.3.2): the same
	// handler, status and headers, no body (docs/design/security.md LIM-3).
	add := func(method, path string, i auth.Interaction, h echo.HandlerFunc) {
		g.Add(method, path, s.chain(i, h))
		if method == http.MethodGet {
			g.Add(http.MethodHead, path, s.chain(i, h))
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		g.Add(m, "/metadata", s.openChain(s.metadata)) // docs/design/security.md RS-1, DISC-7: no token
	}
	add(http.MethodGet, "/:type", auth.InteractionSearch, s.search)
	add(http.MethodPost, "/:type/_search", auth.InteractionSearch, s.searchPost)
	add(http.MethodGet, "/:type/_search", auth.InteractionSearch, s.search)
	add(http.MethodGet, "/:type/:id", auth.InteractionRead, s.read)
	add(http.MethodGet, "/:type/:id/_history", auth.InteractionHistoryInstance, s.history)
	add(http.MethodGet, "/:type/:id/_history/:vid", auth.InteractionVRead, s.vread)
	add(http.MethodGet, "/Patient/:id/$everything", auth.InteractionEverything, s.everything)
	add(http.MethodGet, "/Patient/:id/%24everything", auth.InteractionEverything, s.everything) // echo routes on the raw path when it is escaped
	// Prior authorization on a course (fhir/priorauth.go): read on the
	// CarePlan, the evidence under the caller's search decisions.
	for _, op := range []string{"$", "%24"} {
		add(http.MethodGet, "/CarePlan/:id/"+op+OpPACriteria, auth.InteractionRead, s.paCriteria)
		add(http.MethodGet, "/CarePlan/:id/"+op+OpPASBundle, auth.InteractionRead, s.pasBundle)
		add(http.MethodPost, "/CarePlan/:id/"+op+OpPASBundle, auth.InteractionRead, s.pasBundle)
		add(http.MethodGet, "/CarePlan/:id/"+op+OpPAStatus, auth.InteractionRead, s.paStatus)
	}

	if s.export != nil {
		s.registerExport(g, add)
	}

	// Write interactions (http.html#create, #update, #patch, #delete,
	// #transaction): the API is read-only.
	if s.writer != nil {
		add(http.MethodPost, "", auth.InteractionCreate, s.transaction)
		add(http.MethodPut, "/Task/:id", auth.InteractionUpdate, s.updateTask)
		add(http.MethodPatch, "/Task/:id", auth.InteractionPatch, s.updateTask)
		// A payer's answer to a prior-authorization request
		// (fhir/claimresponse.go).
		add(http.MethodPost, "/ClaimResponse", auth.InteractionCreate, s.createClaimResponse)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m != http.MethodPost || s.writer == nil {
			add(m, "", "", s.readOnly)
		}
		add(m, "/:type", writeInteraction(m, false), s.readOnly)
		add(m, "/:type/:id", writeInteraction(m, true), s.readOnly)
	}
	// Unmatched paths under /fhir (still through the middleware, so an
	// unauthenticated caller gets 401 there too): 404 for GET, 405 for other
	// methods. OPTIONS reaches the chain everywhere, whose CORS policy
	// answers preflights before authentication.
	for _, m := range []string{echo.RouteNotFound, http.MethodOptions} {
		add(m, "", "", s.unmatched)
		add(m, "/*", "", s.unmatched)
	}
	// A path with a leading "//" that is a /fhir path once repeated slashes
	// are collapsed ("//fhir//Patient") is answered like any unmatched /fhir
	// path, through the same chain (401 first); other such paths are left to
	// e's error handler (docs/design/security.md LIM-3). Only "//" paths:
	// a not-found route on "/*" would turn every 405 of e into a 404.
	unmatched := s.chain("", s.unmatched)
	e.RouteNotFound("//*", func(c echo.Context) error {
		if isFHIRPath(c.Request().URL.Path) {
			return unmatched(c)
		}
		return echo.ErrNotFound
	})
}

// chain wraps a data route's handler h in the /fhir middleware, outermost
// first: the access log (with the request id), the audit trail (after the
// response is complete), error rendering, panic recovery, the request
// timeout, CORS (preflights end here), then authentication
// (docs/design/security.md RS-1, LIM-4: before anything parses the
// request), the rate limit, the strict query parse (LIM-2), content
// negotiation (406) and the body limit.
func (s *Server) chain(i auth.Interaction, h echo.HandlerFunc) echo.HandlerFunc {
	return wrap(h, AccessLog(s.log), headNoBody, s.audit(i), RenderErrors, Recover, s.timeoutMW, s.cors.Clients,
		auth.Authenticate(s.verifier), s.rateLimit.Middleware, strictQuery, s.negotiate, s.bodyLimitMW)
}

// openChain is chain for the routes that need no token (the
// CapabilityStatement): open CORS, no authentication, rate limit or audit.
func (s *Server) openChain(h echo.HandlerFunc) echo.HandlerFunc {
	return wrap(h, AccessLog(s.log), headNoBody, RenderErrors, Recover, s.timeoutMW, s.cors.Open, strictQuery, s.negotiate, s.bodyLimitMW)
}

// wrap applies mws to h, the first outermost.
func wrap(h echo.HandlerFunc, mws ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// isFHIRPath reports whether p is /fhir or below it, repeated slashes
// collapsed.
func isFHIRPath(p string) bool {
	p = cleanPath(p)
	return p == "/fhir" || strings.HasPrefix(p, "/fhir/")
}

// checkType returns ErrUnknownType unless typ is served.
func (s *Server) checkType(typ string) error {
	if !s.types[typ] {
		return ErrUnknownType
	}
	return nil
}

// unmatched answers requests no route matched: 404 for GET, else 405 (only
// GET, and POST for _search, are served under /fhir).
func (s *Server) unmatched(c echo.Context) error {
	if m := c.Request().Method; m == http.MethodGet || m == http.MethodHead {
		return ErrUnknownRoute
	}
	return ErrMethodNotAllowed
}

// readOnly answers write interactions: 404 for an unknown type, else 405.
func (s *Server) readOnly(c echo.Context) error {
	if t := c.Param("type"); t != "" {
		if err := s.checkType(t); err != nil {
			return err
		}
		// Every interaction needs authorization (docs/design/security.md RS-1
		// to RS-3, NEG-42): a write the token does not allow is a 403, not
		// a 405.
		if i := writeInteraction(c.Request().Method, c.Param("id") != ""); i != "" {
			if _, err := s.authorize(c, access{interaction: i, typ: t, id: c.Param("id")}); err != nil {
				return err
			}
		}
	}
	return ErrReadOnly
}

// writeInteraction names the write interaction of a method on a type
// (withID: on an instance) (http.html#create, #update, #patch, #delete), ""
// for none.
func writeInteraction(method string, withID bool) auth.Interaction {
	switch {
	case method == http.MethodPost && !withID:
		return auth.InteractionCreate
	case method == http.MethodPut:
		return auth.InteractionUpdate
	case method == http.MethodPatch:
		return auth.InteractionPatch
	case method == http.MethodDelete:
		return auth.InteractionDelete
	}
	return ""
}
