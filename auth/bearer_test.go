package auth

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
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
