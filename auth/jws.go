package auth

import (
	"encoding/base64"
	"errors"
	"strings"
)

// errJWSSegments is a compact JWS whose segments are not canonical base64url.
var errJWSSegments = errors.New("auth: a JWS segment is not canonical base64url")

// checkCompactJWS checks that raw is a compact JWS of exactly three
// non-empty segments, each canonical unpadded base64url (RFC 7515 §7.1,
// RFC 7515 §2 "Base64url Encoding"): only the URL-safe alphabet, no
// padding, no CR or LF (which encoding/base64 skips), and no set bits after
// the last whole byte. golang-jwt decodes more leniently, so two different
// strings could verify as the same token; a JWT the gateway accepts
// (client assertions, access tokens) has one spelling only
// (docs/design/security.md CLI-8).
func checkCompactJWS(raw string) error {
	segs := strings.Split(raw, ".")
	if len(segs) != 3 {
		return errJWSSegments
	}
	for _, s := range segs {
		if s == "" {
			return errJWSSegments
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return errJWSSegments
			}
		}
		if _, err := base64.RawURLEncoding.Strict().DecodeString(s); err != nil {
			return errJWSSegments
		}
	}
	return nil
}
