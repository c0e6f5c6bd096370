// Package fhir is KetaBridge's FHIR R4 REST surface on Echo: read, vread,
// instance history, search (parsed by fhir/search before the store sees it),
// searchset and history Bundles with paging, _include/_revinclude,
// Patient/$everything, the CapabilityStatement, content negotiation, ETags,
// and one error renderer that answers every failure with an OperationOutcome.
//
// The API is read-only (ingest is separate); every data access passes an
// Authorizer decision before the store is queried.
package fhir

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// Defaults for Options.
const (
	DefaultBodyLimit = 1 << 20
	DefaultTimeout   = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	Store store.Store
	// Base is the FHIR base URL clients use, e.g. http://localhost:8080/fhir;
	// fullUrls, paging links and implementation.url are built from it.
	Base string
	// Authorizer decides access; nil denies everything (DenyAll).
	Authorizer Authorizer
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
}

// Server serves the FHIR API. Create it with New and mount it with Register.
type Server struct {
	store      store.Store
	base       string
	auth       Authorizer
	auditor    Auditor
	log        *slog.Logger
	clock      store.Clock
	bodyLimit  int64
	timeout    time.Duration
	types      map[string]bool
	capability []byte
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
		store:     opts.Store,
		base:      strings.TrimSuffix(opts.Base, "/"),
		auth:      opts.Authorizer,
		auditor:   opts.Auditor,
		log:       opts.Logger,
		clock:     opts.Clock,
		bodyLimit: opts.BodyLimit,
		timeout:   opts.Timeout,
		types:     map[string]bool{},
	}
	if s.auth == nil {
		s.auth = DenyAll{}
	}
	if s.log == nil {
		s.log = slog.Default()
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
	profiles := opts.Profiles
	if profiles == nil {
		profiles = USCoreProfiles
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	s.capability, err = buildCapabilityStatement(s.base, version, s.clock.Now(), profiles)
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
			s.renderError(c, err)
			return
		}
		prev(err, c)
	}

	// The middleware chain is composed once per route here rather than by
	// group middleware, which echo v4 re-applies on every request.
	g := e.Group("/fhir")
	add := func(method, path string, h echo.HandlerFunc) {
		g.Add(method, path, s.chain(h))
	}
	add(http.MethodGet, "/metadata", s.metadata)
	add(http.MethodGet, "/:type", s.search)
	add(http.MethodPost, "/:type/_search", s.searchPost)
	add(http.MethodGet, "/:type/_search", s.search)
	add(http.MethodGet, "/:type/:id", s.read)
	add(http.MethodGet, "/:type/:id/_history", s.history)
	add(http.MethodGet, "/:type/:id/_history/:vid", s.vread)
	add(http.MethodGet, "/Patient/:id/$everything", s.everything)
	add(http.MethodGet, "/Patient/:id/%24everything", s.everything) // echo routes on the raw path when it is escaped

	// Write interactions (http.html#create, #update, #patch, #delete,
	// #transaction): the API is read-only.
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		add(m, "", s.readOnly)
		add(m, "/:type", s.readOnly)
		add(m, "/:type/:id", s.readOnly)
	}
	// Unmatched paths under /fhir (still through the middleware): 404 for
	// GET, 405 for other methods.
	add(echo.RouteNotFound, "", s.unmatched)
	add(echo.RouteNotFound, "/*", s.unmatched)
}

// chain wraps h in the /fhir middleware, outermost first: request id,
// audit (after the response is complete), access log + error rendering, panic recovery, content negotiation (406),
// body limit and timeout.
func (s *Server) chain(h echo.HandlerFunc) echo.HandlerFunc {
	mws := []echo.MiddlewareFunc{s.requestID, s.audit, s.accessLog, s.recover, s.negotiate, s.limits}
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func isFHIRPath(p string) bool { return p == "/fhir" || strings.HasPrefix(p, "/fhir/") }

// Authenticator is implemented by Authorizers that can tell whether a
// request carries valid credentials at all, whatever it asks for. The server
// asks it before answering for types and paths it does not serve, so an
// unauthenticated caller gets 401 everywhere under /fhir except the
// CapabilityStatement and learns nothing of the API's shape
// (docs/design/security.md RS-1, NEG-44). A denying Decision is rendered like
// an Authorize denial.
type Authenticator interface {
	Authenticate(c echo.Context) (Decision, error)
}

// authenticated checks the caller's credentials when the Authorizer can.
func (s *Server) authenticated(c echo.Context) error {
	a, ok := s.auth.(Authenticator)
	if !ok {
		return nil
	}
	d, err := a.Authenticate(c)
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			return fe
		}
		return ErrAuthorizerFailure.WithCause(err)
	}
	if !d.Allow {
		if d.Challenge != "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, d.Challenge)
		}
		return d.denial()
	}
	return nil
}

// checkType returns ErrUnknownType unless typ is served; for an unknown type
// the caller's credentials are checked first.
func (s *Server) checkType(c echo.Context, typ string) error {
	if !s.types[typ] {
		if err := s.authenticated(c); err != nil {
			return err
		}
		return ErrUnknownType
	}
	return nil
}

// unmatched answers requests no route matched, after checking the caller's
// credentials: 404 for GET, else 405 (only GET, and POST for _search, are
// served under /fhir).
func (s *Server) unmatched(c echo.Context) error {
	if err := s.authenticated(c); err != nil {
		return err
	}
	if c.Request().Method == http.MethodGet {
		return ErrUnknownRoute
	}
	return ErrMethodNotAllowed
}

// readOnly answers write interactions: 404 for an unknown type, else 405.
func (s *Server) readOnly(c echo.Context) error {
	if t := c.Param("type"); t != "" {
		if err := s.checkType(c, t); err != nil {
			return err
		}
		// Every interaction needs authorization (docs/design/security.md RS-1
		// to RS-3, NEG-42): a write the token does not allow is a 401/403, not
		// a 405.
		if i, ok := writeInteraction(c.Request().Method, c.Param("id") != ""); ok {
			if _, err := s.authorize(c, Access{Interaction: i, Type: t, ID: c.Param("id")}); err != nil {
				return err
			}
		}
	}
	return ErrReadOnly
}

// writeInteraction names the write interaction of a method on a type
// (withID: on an instance) (http.html#create, #update, #patch, #delete).
func writeInteraction(method string, withID bool) (Interaction, bool) {
	switch {
	case method == http.MethodPost && !withID:
		return InteractionCreate, true
	case method == http.MethodPut:
		return InteractionUpdate, true
	case method == http.MethodPatch:
		return InteractionPatch, true
	case method == http.MethodDelete:
		return InteractionDelete, true
	}
	return "", false
}

// authorize asks the Authorizer and turns denials and failures into errors
// (fail closed).
func (s *Server) authorize(c echo.Context, a Access) (Decision, error) {
	d, err := s.auth.Authorize(c, a)
	noteAccess(c, a, d)
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			return Decision{}, fe
		}
		if store.IsUnavailable(err) {
			// Shared auth state (revocations) could not be checked: fail
			// closed, but say it is transient.
			return Decision{}, ErrUnavailable.WithCause(err)
		}
		return Decision{}, ErrAuthorizerFailure.WithCause(err)
	}
	if !d.Allow {
		if d.Challenge != "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, d.Challenge)
		}
		return Decision{}, d.denial()
	}
	return d, nil
}
