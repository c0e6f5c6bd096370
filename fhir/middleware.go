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
)

// HeaderRequestID carries the request id (accepted from the client when it is
// short and plain, else generated).
const HeaderRequestID = "X-Request-Id"

// requestID sets the request id on the context and the response.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(HeaderRequestID)
		if !plainID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Response().Header()[HeaderRequestID] = []string{id} // canonical form of X-Request-Id
		return next(c)
	}
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

// accessLog renders any error the chain returns (through the one renderer)
// and writes one slog line per request: route template (never the raw URL or
// query), status, latency, request id. 5xx log at Error, the rest at Info.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		var fe *Error
		if err != nil {
			fe = AsError(err)
			s.renderError(c, fe)
		}
		status := c.Response().Status
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		if !s.log.Enabled(c.Request().Context(), level) {
			return nil
		}
		attrs := []slog.Attr{
			slog.String("request_id", requestIDOf(c)),
			slog.String("method", c.Request().Method),
			slog.String("route", c.Path()),
			slog.Int("status", status),
			slog.Int64("latency_us", time.Since(start).Microseconds()),
			slog.Int64("bytes", c.Response().Size),
		}
		if fe != nil {
			attrs = append(attrs, slog.String("issue", fe.Code), slog.String("details", fe.Details))
			if status >= 500 && fe.cause != nil {
				attrs = append(attrs, slog.String("cause_type", causeTypes(fe.cause)))
				if pe, ok := fe.cause.(*panicError); ok {
					attrs = append(attrs, slog.String("stack", string(pe.stack)))
				}
			}
		}
		s.log.LogAttrs(c.Request().Context(), level, "fhir request", attrs...)
		return nil
	}
}

// requestIDOf returns the request id set by the requestID middleware.
func requestIDOf(c echo.Context) string {
	if v := c.Response().Header()[HeaderRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
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

// recover turns a panic in a handler into a 500 exception.
func (s *Server) recover(next echo.HandlerFunc) echo.HandlerFunc {
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

// limits applies the request timeout and the body size limit.
func (s *Server) limits(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.bodyLimit {
			return ErrTooLarge
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, s.bodyLimit)
		}
		ctx, cancel := context.WithTimeout(req.Context(), s.timeout)
		defer cancel()
		c.SetRequest(req.WithContext(ctx))
		return next(c)
	}
}
