package auth

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// The login, consent, launcher and error pages are server-rendered
// html/template pages without JavaScript. Every page is sent with the headers
// of setPageHeaders: never cached, never framed, no referrer, and a CSP that
// allows only our own resources (the CSS is inline, hence 'unsafe-inline' for
// styles only).

//go:embed templates/*.html
var pageFS embed.FS

// pageTemplates maps a page name to its template (the shared layout plus the
// page's "content" block).
var pageTemplates = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range []string{"error", "login", "consent", "launch"} {
		m[name] = template.Must(template.New("layout.html").
			ParseFS(pageFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// pageCSP is the Content-Security-Policy of every page. form-action is left
// out on purpose: browsers apply it to the redirect that follows a form post,
// which would block the redirect to the app's redirect_uri.
const pageCSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"

// setPageHeaders sets the security headers every page carries.
func setPageHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// pageData is what every page template sees.
type pageData struct {
	Title string
	// Error is a message shown above the form (never PHI beyond what the
	// signed-in user may see).
	Error string
	// CSRF is the token every form posts back (csrf.go).
	CSRF string
	// Body is the page-specific data.
	Body any
}

// renderPage renders the named page with status. The page is rendered into
// a buffer first, so a template failure is a clean 500, never half a page.
func renderPage(c echo.Context, status int, name string, d pageData) error {
	t, ok := pageTemplates[name]
	if !ok {
		return echo.NewHTTPError(http.StatusInternalServerError)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return err
	}
	setPageHeaders(c.Response().Header())
	return c.HTMLBlob(status, buf.Bytes())
}

// pageError is a failure the user sees as a plain error page: no redirect,
// no form (docs/design/security.md AZ-3). The handlers of the pages return
// it; pageErrors renders it. title and message must not contain PHI or
// secrets.
type pageError struct {
	status         int
	title, message string
}

func (e *pageError) Error() string { return "auth: page " + strconv.Itoa(e.status) + ": " + e.title }

// errorPage returns the pageError with status, title and message.
func errorPage(status int, title, message string) error {
	return &pageError{status: status, title: title, message: message}
}

// pageErrors is the one error renderer of the HTML pages (authorize, consent,
// login, logout, launch): a *pageError is shown as it is; any other error is
// logged (never PHI: store errors carry ids only) and shown as a generic 500
// page, or a 503 page the user can retry when shared state (database, Redis)
// is down (fail closed, docs/design/security.md PRIV-2).
func (s *Server) pageErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		var pe *pageError
		if !errors.As(err, &pe) {
			pe = s.pageFailure(c, err)
		}
		return renderPage(c, pe.status, "error", pageData{Title: pe.title, Error: pe.message})
	}
}

// pageFailure logs an unexpected error of a page and returns the page to
// show for it.
func (s *Server) pageFailure(c echo.Context, err error) *pageError {
	ctx := c.Request().Context()
	if store.IsUnavailable(err) {
		s.opts.Logger.WarnContext(ctx, "auth: page dependency unavailable", "route", c.Path(), "err", err)
		c.Response().Header().Set("Retry-After", "5")
		return &pageError{status: http.StatusServiceUnavailable, title: "Temporarily unavailable",
			message: "The sign-in service is temporarily unavailable. Try again in a moment."}
	}
	s.opts.Logger.ErrorContext(ctx, "auth: page failed", "route", c.Path(), "err", err)
	return &pageError{status: http.StatusInternalServerError, title: "Something went wrong",
		message: "The request could not be processed. Try again later."}
}

// smartStyle is the SMART style document (SMART App Launch 2.2
// scopes-and-launch-context#styling, docs/design/security.md TOK-6), matching
// the pages' CSS.
var smartStyle = []byte(`{
  "color_background": "#f6f7f9",
  "color_error": "#b3261e",
  "color_highlight": "#2f6f8f",
  "color_modal_backdrop": "#1b1f24",
  "color_success": "#2e7d32",
  "color_text": "#1b1f24",
  "dim_border_radius": "6px",
  "dim_font_size": "15px",
  "dim_spacing_size": "16px",
  "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
}
`)

// handleStyle serves GET /auth/style.json, the smart_style_url document. It
// is public and the same for everyone, so it may be cached and (CORS.Open)
// read from any origin.
func handleStyle(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.Blob(http.StatusOK, "application/json", smartStyle)
}
