package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		tok     string
		err     error
	}{
		{"none", nil, "", ErrNoBearer},
		{"bearer", []string{"Bearer abc.DEF-_~+/=="}, "abc.DEF-_~+/==", nil},
		{"scheme case-insensitive", []string{"bEaReR xyz"}, "xyz", nil},
		{"basic is not bearer", []string{"Basic dXNlcjpwdw=="}, "", ErrNoBearer},
		{"scheme only", []string{"Bearer"}, "", ErrInvalidToken},
		{"empty token", []string{"Bearer "}, "", ErrInvalidToken},
		{"two tokens", []string{"Bearer a b"}, "", ErrInvalidToken},
		{"comma list", []string{"Bearer a, Bearer b"}, "", ErrInvalidToken},
		{"padding in the middle", []string{"Bearer a=b"}, "", ErrInvalidToken},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.headers {
				h.Add("Authorization", v)
			}
			tok, err := BearerToken(h)
			if tok != tc.tok || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("BearerToken = %q, %v; want %q, %v", tok, err, tc.tok, tc.err)
			}
		})
	}
}

func TestBearerChallenge(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		status    int
		challenge string
	}{
		{"missing", ErrNoBearer, 401, `Bearer realm="KetaBridge"`},
		{"invalid", fmt.Errorf("%w: expired", ErrInvalidToken), 401, `Bearer realm="KetaBridge", error="invalid_token"`},
		{"insufficient", ErrInsufficientScope, 403, `Bearer realm="KetaBridge", error="insufficient_scope"`},
		{"other fails closed", errors.New("db down"), 500, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, ch := BearerChallenge("KetaBridge", tc.err)
			if st != tc.status || ch != tc.challenge {
				t.Errorf("= %d %q", st, ch)
			}
		})
	}
	if _, ch := BearerChallenge(`a"b\c`, ErrNoBearer); ch != `Bearer realm="a\"b\\c"` {
		t.Errorf("realm quoting: %s", ch)
	}
}

// verifierFunc adapts a function to Verifier (the fake at the token seam).
type verifierFunc func(ctx context.Context, raw string) (*AccessInfo, error)

func (f verifierFunc) Verify(ctx context.Context, raw string) (*AccessInfo, error) {
	return f(ctx, raw)
}

// fakeVerifier accepts the tokens named in infos; "down" fails to decide.
func fakeVerifier(infos map[string]*AccessInfo) Verifier {
	return verifierFunc(func(_ context.Context, raw string) (*AccessInfo, error) {
		if raw == "down" {
			return nil, errors.New("revocation store down")
		}
		if info, ok := infos[raw]; ok {
			return info, nil
		}
		return nil, invalid("unknown")
	})
}

// TestAuthenticate covers docs/design/security.md RS-1, RS-2, NEG-35, NEG-36:
// the caller is verified once, before the handler, and travels in the
// request's context.
func TestAuthenticate(t *testing.T) {
	good := &AccessInfo{ClientID: "app"}
	v := fakeVerifier(map[string]*AccessInfo{"good": good})
	tests := []struct {
		name      string
		v         Verifier
		header    string
		status    int // 0: the handler ran
		challenge string
		failure   bool // a failure to decide, not a refusal
	}{
		{name: "valid token", v: v, header: "Bearer good"},
		{name: "no Authorization", v: v, status: 401, challenge: `Bearer realm="KetaBridge"`},
		{name: "other scheme", v: v, header: "Basic dTpw", status: 401, challenge: `Bearer realm="KetaBridge"`},
		{name: "unknown token", v: v, header: "Bearer nope", status: 401, challenge: `Bearer realm="KetaBridge", error="invalid_token"`},
		{name: "malformed credentials", v: v, header: "Bearer a b", status: 401, challenge: `Bearer realm="KetaBridge", error="invalid_token"`},
		{name: "verification fails", v: v, header: "Bearer down", failure: true},
		{name: "no verifier refuses", v: nil, header: "Bearer good", status: 401, challenge: `Bearer realm="KetaBridge", error="invalid_token"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got *AccessInfo
			h := Authenticate(tc.v)(func(c echo.Context) error {
				got, _ = FromContext(c.Request().Context())
				return c.NoContent(http.StatusNoContent)
			})
			req := httptest.NewRequest(http.MethodGet, "/fhir/Patient/p1", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			err := h(echo.New().NewContext(req, httptest.NewRecorder()))
			var be *BearerError
			switch {
			case tc.failure:
				if err == nil || errors.As(err, &be) {
					t.Fatalf("err = %v, want a failure to decide", err)
				}
			case tc.status == 0:
				if err != nil || got != good {
					t.Fatalf("err = %v, caller = %v", err, got)
				}
			default:
				if !errors.As(err, &be) || be.Status != tc.status || be.Challenge != tc.challenge || be.Details == "" {
					t.Fatalf("err = %#v, want %d %q", err, tc.status, tc.challenge)
				}
				if got != nil {
					t.Fatal("the handler ran")
				}
			}
		})
	}
}

func TestRequireScope(t *testing.T) {
	tests := []struct {
		name, scope string
		anonymous   bool
		role        Role // bound to an outside organization when set
		status      int  // 0: allowed
	}{
		{name: "a payer's client with the write scope", scope: "system/ClinicRecord.write", role: RolePayer, status: 403},
		{name: "a partner's client with the write scope", scope: "system/ClinicRecord.write", role: RolePartner, status: 403},
		{name: "backend write scope", scope: "system/ClinicRecord.write"},
		{name: "v2 create scope", scope: "system/ClinicRecord.c"},
		{name: "read-only system scope", scope: "system/ClinicRecord.read", status: 403},
		{name: "other type", scope: "system/Observation.write", status: 403},
		{name: "patient scope", scope: "patient/ClinicRecord.write", status: 403},
		{name: "granular scope", scope: "system/ClinicRecord.c?category=x", status: 403},
		{name: "not authenticated", anonymous: true, status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			h := RequireScope("ClinicRecord", InteractionCreate)(func(echo.Context) error { ran = true; return nil })
			req := httptest.NewRequest(http.MethodPost, "/internal/v1/records", nil)
			if !tc.anonymous {
				p := principal(t, tc.scope, "p1", false)
				if tc.role != "" {
					p.Role, p.Organization = tc.role, "org-1"
				}
				req = req.WithContext(NewContext(req.Context(), &AccessInfo{Principal: p}))
			}
			err := h(echo.New().NewContext(req, httptest.NewRecorder()))
			if tc.status == 0 {
				if err != nil || !ran {
					t.Fatalf("err = %v, ran = %v", err, ran)
				}
				return
			}
			var be *BearerError
			if !errors.As(err, &be) || be.Status != tc.status || ran {
				t.Fatalf("err = %v, ran = %v; want %d", err, ran, tc.status)
			}
			if tc.status == 403 && (!errors.Is(err, ErrInsufficientScope) || be.Challenge != `Bearer realm="KetaBridge", error="insufficient_scope"`) {
				t.Errorf("403 = %#v", be)
			}
		})
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("a bare context has a caller")
	}
	if _, ok := FromContext(NewContext(context.Background(), nil)); ok {
		t.Error("a nil caller counts")
	}
	info := &AccessInfo{ClientID: "app"}
	if got, ok := FromContext(NewContext(context.Background(), info)); !ok || got != info {
		t.Errorf("FromContext = %v, %v", got, ok)
	}
}
