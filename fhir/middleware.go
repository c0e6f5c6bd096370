package fhir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
)

// HeaderRequestID carries the request id (accepted from the client when it is
// short and plain, else generated).
const HeaderRequestID = "X-Request-Id"

// contextKeyError is the echo.Context key of the *Error the renderer answered
// with, for the access log.
const contextKeyError = "fhir.error"

// AccessLog is the gateway's one access log (docs/design/security.md PRIV-4),
// the outermost middleware of /fhir, /internal and /auth routes. It sets the
// request id (X-Request-Id on the response) and writes one slog line per
// request: request id, method, route template, status, latency, size, the
// client id when the caller was authenticated, and for a rendered error its
// IssueType and safe details (the cause's Go types and, for a panic, the
// stack on 5xx). Never the raw URL, query string, body or diagnostics. 5xx log
// at Error, the rest at Info. An error that reaches it unrendered is passed on
// to Echo's error handler and logged with the status it will get.
func AccessLog(log *slog.Logger) echo.MiddlewareFunc {
	if log == nil {
		log = slog.Default()
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			setRequestID(c)
			err := next(c)
			status := c.Response().Status
			if err != nil && !c.Response().Committed {
				status = http.StatusInternalServerError
				var he *echo.HTTPError
				if errors.As(err, &he) {
					status = he.Code
				}
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			ctx := c.Request().Context()
			if log.Enabled(ctx, level) {
				log.LogAttrs(ctx, level, "request", accessAttrs(c, status, time.Since(start))...)
			}
			return err
		}
	}
}

// accessAttrs are the attributes of one access log line.
func accessAttrs(c echo.Context, status int, latency time.Duration) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("request_id", requestIDOf(c)),
		slog.String("method", c.Request().Method),
		slog.String("route", c.Path()),
		slog.Int("status", status),
		slog.Int64("latency_us", latency.Microseconds()),
		slog.Int64("bytes", c.Response().Size),
	}
	if info, ok := auth.FromContext(c.Request().Context()); ok {
		attrs = append(attrs, slog.String("client_id", info.ClientID))
	}
	if fe, ok := c.Get(contextKeyError).(*Error); ok {
		attrs = append(attrs, slog.String("issue", fe.Code), slog.String("details", fe.Details))
		if status >= 500 && fe.cause != nil {
			attrs = append(attrs, slog.String("cause_type", causeTypes(fe.cause)))
			var pe *panicError
			if errors.As(fe.cause, &pe) {
				attrs = append(attrs, slog.String("stack", string(pe.stack)))
			}
		}
	}
	return attrs
}

// contextKeyRandomRequestID marks (true) a request whose id setRequestID
// made: 12 random bytes, unique, unlike a client's.
const contextKeyRandomRequestID = "fhir.request-id-random"

// setRequestID sets the request id on the response: the client's when it is
// plain, else a new random one.
func setRequestID(c echo.Context) {
	id := c.Request().Header.Get(HeaderRequestID)
	if !plainID(id) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
		c.Set(contextKeyRandomRequestID, true)
	}
	c.Response().Header()[HeaderRequestID] = []string{id} // canonical form of X-Request-Id
}

// plainID reports whether id is 1-64 characters of [A-Za-z0-9._-], so a
// client-sent id cannot inject anything into logs or headers.
func plainID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
			return false
		}
	}
	return true
}

// requestIDOf returns the request id set by AccessLog.
func requestIDOf(c echo.Context) string {
	if v := c.Response().Header()[HeaderRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// RenderErrors is the one OperationOutcome renderer as middleware, for any
// Echo route or group (/fhir, /internal): an error a later middleware or the
// handler returns is answered through renderError and remembered for
// AccessLog, which runs outside it.
func RenderErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			renderError(c, err)
		}
		return nil
	}
}

// panicError is a recovered panic; its text names the value's type only (the
// value itself might hold resource content) plus the stack.
type panicError struct {
	typ   string
	stack []byte
}

func (p *panicError) Error() string { return "panic (" + p.typ + ")\n" + string(p.stack) }

// causeTypes names the Go types of an error chain, e.g.
// "*fmt.wrapError > *errors.errorString". Error texts are not logged: a
// backend's message may quote values (PHI).
func causeTypes(err error) string {
	var b strings.Builder
	for i := 0; err != nil && i < 8; i++ {
		if i > 0 {
			b.WriteString(" > ")
		}
		fmt.Fprintf(&b, "%T", err)
		if pe, ok := err.(*panicError); ok {
			b.WriteString("(" + pe.typ + ")")
		}
		err = errors.Unwrap(err)
	}
	return b.String()
}

// Recover turns a panic in a later middleware or the handler into a 500
// exception (inside RenderErrors, so it is answered with an
// OperationOutcome).
func Recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = ErrInternal.WithCause(&panicError{typ: fmt.Sprintf("%T", r), stack: debug.Stack()})
			}
		}()
		return next(c)
	}
}

// timeoutMW applies the request timeout.
func (s *Server) timeoutMW(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.timeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// bodyLimitMW applies the body size limit (after authentication: an
// unauthenticated request gets 401 whatever its size).
func (s *Server) bodyLimitMW(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.bodyLimit {
			return ErrTooLarge
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, s.bodyLimit)
		}
		return next(c)
	}
}

// headNoBody answers a HEAD request like the GET it mirrors, without the
// body: the handler runs as for GET (the same status, headers and audit
// trail) and what it writes is dropped (RFC 9110 §9.3.2). net/http drops a
// HEAD body as well; this keeps the handler's answer right on any writer.
func headNoBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodHead {
			resp := c.Response()
			resp.Writer = headWriter{resp.Writer}
		}
		return next(c)
	}
}

// headWriter drops the body of a HEAD answer.
type headWriter struct{ http.ResponseWriter }

func (w headWriter) Write(p []byte) (int, error) { return len(p), nil }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w headWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
