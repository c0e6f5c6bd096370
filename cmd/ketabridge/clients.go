package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

const clientsUsage = "clients add --id ID --kind public|symmetric|asymmetric|backend [--name NAME] " +
	"[--redirect-uri URI]... [--launch-url URL] --scope \"SCOPES\" [--origin ORIGIN]... " +
	"[--jwks-file FILE] [--jwks-url URL] [--secret-file FILE] [--replace] | clients list | clients remove --id ID"

// appScopes are the non-resource scopes a user-facing client may be
// registered for (SMART App Launch 2.2 scopes-and-launch-context).
var appScopes = map[string]bool{
	"openid": true, "fhirUser": true, "profile": true, "launch": true, "launch/patient": true,
	"launch/encounter": true, "offline_access": true, "online_access": true,
}

// minRSABits is the smallest RSA key accepted in a client's JWKS.
const minRSABits = 2048

// cmdClients administers the registered SMART client applications.
func cmdClients(ctx context.Context, args []string, e env) error {
	return verbCommand("clients", args, map[string]func([]string) error{
		"add":    func(a []string) error { return clientsAdd(ctx, a, e) },
		"list":   func(a []string) error { return clientsList(ctx, a, e) },
		"remove": func(a []string) error { return clientsRemove(ctx, a, e) },
	}, clientsUsage)
}

func clientsAdd(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("clients add")
	id := cf.fs.String("id", "", "client_id")
	kind := cf.fs.String("kind", "", "public, symmetric, asymmetric or backend")
	name := cf.fs.String("name", "", "display name (shown on the consent page)")
	var redirects, origins multiFlag
	cf.fs.Var(&redirects, "redirect-uri", "registered redirect URI (repeatable)")
	cf.fs.Var(&origins, "origin", "browser origin allowed by CORS (repeatable)")
	launchURL := cf.fs.String("launch-url", "", "the app's EHR launch URL")
	scope := cf.fs.String("scope", "", "space-separated scopes the client may be granted")
	jwksFile := cf.fs.String("jwks-file", "", "file holding the client's public JWK Set (asymmetric, backend)")
	jwksURL := cf.fs.String("jwks-url", "", "the client's JWK Set URL (asymmetric, backend)")
	secretFile := cf.fs.String("secret-file", "", "file holding a symmetric client's secret (default: generate one)")
	replace := cf.fs.Bool("replace", false, "replace an existing client of this id")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	c := store.Client{
		ID: *id, Name: strings.TrimSpace(*name), Kind: store.ClientKind(*kind),
		RedirectURIs: redirects, LaunchURL: *launchURL, Scopes: strings.Fields(*scope),
		Origins: origins, JWKSURL: *jwksURL,
	}
	if *jwksFile != "" {
		if c.JWKS, err = os.ReadFile(*jwksFile); err != nil {
			return &exitError{code: 1, msg: "clients add: cannot read --jwks-file: " + err.Error()}
		}
	}
	if err := validateClient(c); err != nil {
		return &usageError{msg: "clients add: " + err.Error()}
	}
	var secret, generated string
	if c.Kind == store.ClientSymmetric {
		if *secretFile != "" {
			if secret, err = readSecret(*secretFile, e.stdin); err != nil {
				return &exitError{code: 1, msg: "clients add: cannot read --secret-file: " + err.Error()}
			}
			if len(secret) < 32 {
				return &usageError{msg: "clients add: the client secret must have at least 32 characters"}
			}
		} else {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			secret = base64.RawURLEncoding.EncodeToString(b)
			generated = secret
		}
		if c.SecretHash, err = auth.HashPassword(secret); err != nil {
			return err
		}
	} else if *secretFile != "" {
		return &usageError{msg: "clients add: --secret-file is for --kind symmetric only"}
	}

	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	old, err := st.GetClient(ctx, c.ID)
	switch {
	case err == nil && !*replace:
		return &exitError{code: 1, msg: "clients add: client " + c.ID + " exists (use --replace to replace it)"}
	case err == nil:
		c.Created = old.Created
	case errors.Is(err, store.ErrNotFound):
		c.Created = time.Now().UTC()
	default:
		return err
	}
	if err := st.PutClient(ctx, c); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "client %s (%s) saved\n", c.ID, c.Kind)
	if generated != "" {
		fmt.Fprintf(e.stdout, "client_secret: %s\n(shown once: store it now; it cannot be recovered)\n", generated)
	}
	return nil
}

// validateClient checks a client registration. User-facing clients (public,
// symmetric, asymmetric) need a redirect URI and take launch/openid scopes
// and patient/ or user/ resource scopes; backend clients (SMART Backend
// Services) take system/ scopes only. Asymmetric and backend clients need a
// JWK Set (inline or by URL); the others must not have one.
func validateClient(c store.Client) error {
	if !validID(c.ID) {
		return errors.New("--id must be 1 to 64 characters without spaces")
	}
	backend := c.Kind == store.ClientBackend
	switch c.Kind {
	case store.ClientPublic, store.ClientSymmetric, store.ClientAsymmetric, store.ClientBackend:
	default:
		return errors.New("--kind must be public, symmetric, asymmetric or backend")
	}
	if !backend && len(c.RedirectURIs) == 0 {
		return errors.New("--redirect-uri is required for a " + string(c.Kind) + " client")
	}
	if backend && (len(c.RedirectURIs) > 0 || c.LaunchURL != "") {
		return errors.New("a backend client has no --redirect-uri or --launch-url")
	}
	for _, r := range c.RedirectURIs {
		if err := checkWebURL(r); err != nil {
			return fmt.Errorf("--redirect-uri %q %v", r, err)
		}
	}
	if c.LaunchURL != "" {
		if err := checkWebURL(c.LaunchURL); err != nil {
			return fmt.Errorf("--launch-url %v", err)
		}
	}
	for _, o := range c.Origins {
		if err := checkOrigin(o); err != nil {
			return fmt.Errorf("--origin %q %v", o, err)
		}
	}
	if len(c.Scopes) == 0 {
		return errors.New("--scope is required (space-separated scopes)")
	}
	for _, s := range c.Scopes {
		if err := checkClientScope(s, backend); err != nil {
			return err
		}
	}
	needKeys := c.Kind == store.ClientAsymmetric || backend
	hasKeys := len(c.JWKS) > 0 || c.JWKSURL != ""
	switch {
	case needKeys && !hasKeys:
		return errors.New("--jwks-file or --jwks-url is required for a " + string(c.Kind) + " client")
	case !needKeys && hasKeys:
		return errors.New("--jwks-file and --jwks-url are for asymmetric and backend clients only")
	}
	if c.JWKSURL != "" {
		if err := checkWebURL(c.JWKSURL); err != nil {
			return fmt.Errorf("--jwks-url %v", err)
		}
	}
	if len(c.JWKS) > 0 {
		if err := checkJWKS(c.JWKS); err != nil {
			return fmt.Errorf("--jwks-file: %v", err)
		}
	}
	return nil
}

// checkOrigin checks a web origin: scheme://host[:port] only (RFC 6454),
// https unless loopback.
func checkOrigin(o string) error {
	if err := checkWebURL(o); err != nil {
		return err
	}
	u, _ := url.Parse(o)
	if u.Path != "" || u.RawQuery != "" || u.ForceQuery {
		return errors.New("must be an origin: scheme://host[:port] without path or query")
	}
	return nil
}

// checkClientScope checks one registered scope.
func checkClientScope(s string, backend bool) error {
	if !auth.IsResourceScope(s) {
		if backend {
			return fmt.Errorf("--scope %q: a backend client takes system/ resource scopes only", s)
		}
		if !appScopes[s] {
			return fmt.Errorf("--scope %q: unknown scope", s)
		}
		return nil
	}
	sc, err := auth.ParseScope(s)
	if err != nil {
		return fmt.Errorf("--scope: %v", err)
	}
	if backend != (sc.Context == auth.ContextSystem) {
		if backend {
			return fmt.Errorf("--scope %q: a backend client takes system/ scopes only", s)
		}
		return fmt.Errorf("--scope %q: system/ scopes are for backend clients", s)
	}
	return nil
}

// checkJWKS checks a client's JWK Set (RFC 7517 §5): at least one key, each
// a public RSA (>= 2048 bits) or EC key with a kid.
func checkJWKS(b []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return errors.New("not a JWK Set: " + err.Error())
	}
	if len(set.Keys) == 0 {
		return errors.New("the JWK Set has no keys")
	}
	for i, k := range set.Keys {
		if k.KeyID == "" {
			return fmt.Errorf("key %d has no kid", i)
		}
		if !k.IsPublic() {
			return fmt.Errorf("key %s is a private key: register the public keys only", k.KeyID)
		}
		if !k.Valid() {
			return fmt.Errorf("key %s is not a valid key", k.KeyID)
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < minRSABits {
				return fmt.Errorf("key %s: RSA keys must have at least %d bits", k.KeyID, minRSABits)
			}
		case *ecdsa.PublicKey:
		default:
			return fmt.Errorf("key %s: only RSA and EC keys are accepted", k.KeyID)
		}
	}
	return nil
}

func clientsList(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("clients list")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	clients, err := st.ListClients(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tNAME\tSCOPES\tREDIRECT URIS\tKEYS")
	for _, c := range clients {
		keys := "-"
		switch {
		case len(c.JWKS) > 0 && c.JWKSURL != "":
			keys = "jwks+" + c.JWKSURL
		case len(c.JWKS) > 0:
			keys = "jwks"
		case c.JWKSURL != "":
			keys = c.JWKSURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Kind, orDash(c.Name), orDash(strings.Join(c.Scopes, " ")),
			orDash(strings.Join(c.RedirectURIs, " ")), keys)
	}
	return tw.Flush()
}

func clientsRemove(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("clients remove")
	id := cf.fs.String("id", "", "client_id")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	if *id == "" {
		return &usageError{msg: "clients remove: --id is required"}
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.DeleteClient(ctx, *id); errors.Is(err, store.ErrNotFound) {
		return &exitError{code: 1, msg: "clients remove: no client " + *id}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "client %s removed\n", *id)
	return nil
}
