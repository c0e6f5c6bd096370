package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// revoke is POST /auth/revoke (RFC 7009; docs/design/security.md INT-3). The
// client authenticates as at the token endpoint (a public client by
// client_id). Revoking an access or a refresh token revokes its whole grant:
// every token issued from it stops working. The answer is 200 whether or not
// the token was known (RFC 7009 §2.2); a token of another client is left
// alone.
func (t *tokenService) revoke(c echo.Context) error {
	if err := t.revokeToken(c); err != nil {
		return err
	}
	noStore(c)
	return c.NoContent(http.StatusOK)
}

func (t *tokenService) revokeToken(c echo.Context) error {
	form, err := readForm(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	client, err := t.authenticateClient(ctx, c.Request(), form)
	if err != nil {
		return err
	}
	if client == nil {
		return ErrInvalidClient.WithDescription("client_id or client authentication is required")
	}
	tok := form.Get("token")
	if tok == "" {
		return ErrInvalidRequest.WithDescription("token is required")
	}
	gid, owner, err := t.grantOfToken(ctx, tok)
	if err != nil || gid == "" || owner != client.ID {
		return err
	}
	return t.revokeGrant(ctx, gid)
}

// grantOfToken finds the grant an access or refresh token belongs to and its
// client ("" when the token is unknown or no longer valid).
func (t *tokenService) grantOfToken(ctx context.Context, tok string) (grantID, clientID string, err error) {
	if info, err := t.s.tokens.Verify(ctx, tok); err == nil {
		return info.GrantID, info.ClientID, nil
	} else if !errors.Is(err, ErrInvalidToken) {
		return "", "", err
	}
	g, err := t.grants.FindGrantByRefresh(ctx, Hash(tok))
	if errors.Is(err, store.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("find grant: %w", err)
	}
	return g.ID, g.ClientID, nil
}
