package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/ketabridge/ketabridge/auth"
)

var tokenCommand = &command{
	name: "token", args: "--client ID --key FILE [--scope S] [flags]",
	summary: "get an access token as a backend client (client_credentials with a private_key_jwt assertion)",
	flags: func(fs *flag.FlagSet) action {
		clientID := fs.String("client", "", "registered backend client id")
		keyFile := fs.String("key", "", "PEM private key (PKCS#8 or PKCS#1 RSA, or EC P-384) of the client")
		kid := fs.String("kid", "", "key id registered in the client's JWKS (default: the key's RFC 7638 thumbprint)")
		scope := fs.String("scope", "system/*.rs", "scopes to request")
		tokenURL := fs.String("token-url", "", "where to POST (default: {base-url}/auth/token); the assertion's aud is always {base-url}/auth/token, the URL the server advertises, so set --base-url to the server's")
		return func(ctx context.Context, inv *invocation) error {
			if *clientID == "" || *keyFile == "" {
				return usageError("token: --client and --key are required")
			}
			pemBytes, err := os.ReadFile(*keyFile)
			if err != nil {
				return fmt.Errorf("token: cannot read --key: %v", err)
			}
			bk, err := auth.ParseBackendKey(*clientID, pemBytes)
			if err != nil {
				return fmt.Errorf("token: --key: %v", err)
			}
			bk.KID = *kid
			target := inv.cfg.TokenEndpoint()
			if *tokenURL != "" {
				target = *tokenURL
			}
			tok, err := bk.AccessToken(ctx, &http.Client{Timeout: 30 * time.Second}, target, inv.cfg.TokenEndpoint(), *scope)
			if err != nil {
				return fmt.Errorf("token: %v", err)
			}
			fmt.Fprintln(inv.e.stdout, tok)
			return nil
		}
	},
}
