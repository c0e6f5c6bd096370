package auth

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
)

// CORS (SMART App Launch 2.2 app-launch#considerations-for-cross-origin-
// resource-sharing-cors-support; docs/design/security.md NET-1): discovery
// documents and the JWKS are open to any origin; the token, introspection and
// revocation endpoints answer only origins some registered client lists in
// store.Client.Origins. Preflights allow the Authorization and Content-Type
// headers.

const (
	corsAllowHeaders = "Authorization, Content-Type"
	corsMaxAge       = "600"
)

// openCORS allows any origin (GET/OPTIONS documents) and answers preflights.
func openCORS(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if c.Request().Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

// clientCORS allows a registered client origin. Requests without Origin or
// from other origins get no CORS headers (the browser then refuses to expose
// the response); the endpoints themselves still authenticate every request.
func (t *tokenService) clientCORS(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Add("Vary", "Origin")
		if origin := c.Request().Header.Get("Origin"); origin != "" {
			ok, err := t.originAllowed(c, origin)
			if err != nil {
				return err // fail closed: no CORS headers, oauthErrors answers
			}
			if ok {
				h.Set("Access-Control-Allow-Origin", origin)
				if c.Request().Method == http.MethodOptions {
					h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
					h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
					h.Set("Access-Control-Max-Age", corsMaxAge)
				}
			}
		}
		return next(c)
	}
}

// preflight answers OPTIONS after clientCORS set (or withheld) the headers.
func (t *tokenService) preflight(c echo.Context) error { return c.NoContent(http.StatusNoContent) }

// originAllowed reports whether some registered client lists origin.
func (t *tokenService) originAllowed(c echo.Context, origin string) (bool, error) {
	clients, err := t.s.opts.Store.ListClients(c.Request().Context())
	if err != nil {
		return false, err
	}
	for _, cl := range clients {
		if slices.Contains(cl.Origins, origin) {
			return true, nil
		}
	}
	return false, nil
}
