package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestOAuthErrorRendering(t *testing.T) {
	s := New(Options{BaseURL: "http://gw.example"})
	for _, c := range []struct {
		name      string
		err       error
		status    int
		code      string
		desc      string
		challenge string
	}{
		{"sentinel with description", ErrInvalidGrant.WithDescription("code expired"), 400, "invalid_grant", "code expired", ""},
		{"wrapped", fmt.Errorf("flow: %w", ErrInvalidScope), 400, "invalid_scope", "", ""},
		{"basic challenge", withChallenge(ErrInvalidClient.WithDescription("bad"), basicChallenge), 401, "invalid_client", "bad", basicChallenge},
		{"unknown error hides its text", errors.New("database at 10.0.0.1 said no"), 500, "server_error", "internal error", ""},
		{"unavailable", ErrTemporarilyUnavailable, 503, "temporarily_unavailable", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := echo.New()
			rec := httptest.NewRecorder()
			ctx := e.NewContext(httptest.NewRequest(http.MethodPost, "/auth/token", nil), rec)
			if err := s.writeOAuthError(ctx, c.err); err != nil {
				t.Fatal(err)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != c.status || body["error"] != c.code || body["error_description"] != c.desc {
				t.Errorf("got %d %v", rec.Code, body)
			}
			if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Pragma") != "no-cache" {
				t.Errorf("caching headers: %v", rec.Header())
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != c.challenge {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("WithDescription copies", func(t *testing.T) {
		e := ErrInvalidRequest.WithDescription("x")
		if ErrInvalidRequest.Description != "" || !errors.Is(e, ErrInvalidRequest) || errors.Is(e, ErrInvalidGrant) {
			t.Errorf("sentinel modified or Is wrong")
		}
	})
}
