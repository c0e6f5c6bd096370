package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/store"
)

// The administration of the authorization server's registries: logins,
// client apps and signing keys. The rules of what may be registered are
// auth's (auth.NewUser, auth.NewClient); these commands read flags and
// files, call them and store the result.

var usersCommand = &command{name: "users", summary: "manage logins (clinician, patient, admin)", verbs: []*command{
	{name: "users add", args: "--id ID --role clinician|patient|admin [--fhir-user Practitioner/ID|Patient/ID] [--password-file FILE] [--replace]",
		summary: "add a login; the password comes from --password-file or stdin, never a flag", flags: usersAdd},
	{name: "users list", summary: "list the logins", flags: listing(printUsers)},
	{name: "users remove", args: "--id ID", summary: "remove a login", flags: removal("user",
		func(ctx context.Context, st store.AuthStore, id string) error { return st.DeleteUser(ctx, id) })},
}}

var clientsCommand = &command{name: "clients", summary: "manage SMART client apps (public, symmetric, asymmetric, backend)", verbs: []*command{
	{name: "clients add", args: "--id ID --kind public|symmetric|asymmetric|backend --scope \"SCOPES\" [--organization ORG --role ehr|payer|partner] [flags]",
		summary: "register a client app (a symmetric client's secret is generated and shown once unless --secret-file)", flags: clientsAdd},
	{name: "clients list", summary: "list the client apps", flags: listing(printClients)},
	{name: "clients remove", args: "--id ID", summary: "remove a client app", flags: removal("client",
		func(ctx context.Context, st store.AuthStore, id string) error { return st.DeleteClient(ctx, id) })},
}}

var keysCommand = &command{name: "keys", summary: "manage token signing keys", verbs: []*command{
	{name: "keys rotate", summary: "make a new signing key current (the old one keeps verifying until its tokens expire)",
		flags: func(*flag.FlagSet) action { return keysRotate }},
	{name: "keys list", summary: "list the signing keys (never the private keys)", flags: listing(printKeys)},
}}

func usersAdd(fs *flag.FlagSet) action {
	var r auth.UserRegistration
	fs.StringVar(&r.ID, "id", "", "login name")
	role := fs.String("role", "", "clinician, patient or admin")
	fs.StringVar(&r.FHIRUser, "fhir-user", "", "the user's FHIR resource: Practitioner/ID or Patient/ID")
	fs.StringVar(&r.Name, "name", "", "display name")
	pwFile := fs.String("password-file", "", "file holding the password (default: read stdin)")
	replace := fs.Bool("replace", false, "replace an existing user of this id (e.g. to reset the password)")
	return func(ctx context.Context, inv *invocation) error {
		r.Role = store.UserRole(*role)
		// The fields first, so nobody types a password for a refused user.
		if err := auth.ValidateUser(store.User{ID: r.ID, Role: r.Role, FHIRUser: r.FHIRUser}); err != nil {
			return err
		}
		pw, err := readSecret(*pwFile, inv.e.stdin)
		if err != nil {
			return fmt.Errorf("users add: cannot read the password: %v", err)
		}
		r.Password = pw
		u, err := auth.NewUser(r, time.Now())
		if err != nil {
			return err
		}
		if err := save(ctx, inv, *replace, &u); err != nil {
			return err
		}
		fmt.Fprintf(inv.e.stdout, "user %s (%s, %s) saved\n", u.ID, u.Role, orDash(u.FHIRUser))
		return nil
	}
}

func clientsAdd(fs *flag.FlagSet) action {
	var r auth.ClientRegistration
	fs.StringVar(&r.ID, "id", "", "client_id")
	kind := fs.String("kind", "", "public, symmetric, asymmetric or backend")
	fs.StringVar(&r.Name, "name", "", "display name (shown on the consent page)")
	fs.Var((*multiFlag)(&r.RedirectURIs), "redirect-uri", "registered redirect URI (repeatable)")
	fs.Var((*multiFlag)(&r.Origins), "origin", "browser origin allowed by CORS (repeatable)")
	fs.StringVar(&r.LaunchURL, "launch-url", "", "the app's EHR launch URL")
	scope := fs.String("scope", "", "space-separated scopes the client may be granted")
	jwksFile := fs.String("jwks-file", "", "file holding the client's public JWK Set (asymmetric, backend)")
	fs.StringVar(&r.JWKSURL, "jwks-url", "", "the client's JWK Set URL (asymmetric, backend)")
	secretFile := fs.String("secret-file", "", "file holding a symmetric client's secret (default: generate one)")
	replace := fs.Bool("replace", false, "replace an existing client of this id")
	org := fs.String("organization", "", "the organization the client acts for: its clinic record id or Organization/ID")
	role := fs.String("role", "", "what the client is to the clinic: ehr (default), payer or partner (docs/access.md)")
	return func(ctx context.Context, inv *invocation) error {
		r.Kind, r.Scopes = store.ClientKind(*kind), strings.Fields(*scope)
		var ok bool
		if r.Role, ok = auth.ParseRole(*role); !ok {
			return usageError("clients add: --role must be ehr, payer or partner")
		}
		r.Organization = organizationID(*org)
		var err error
		if *jwksFile != "" {
			if r.JWKS, err = os.ReadFile(*jwksFile); err != nil {
				return fmt.Errorf("clients add: cannot read --jwks-file: %v", err)
			}
		}
		if *secretFile != "" {
			if r.Secret, err = readSecret(*secretFile, inv.e.stdin); err != nil {
				return fmt.Errorf("clients add: cannot read --secret-file: %v", err)
			}
		}
		c, generated, err := auth.NewClient(r, time.Now())
		if err != nil {
			return err
		}
		if c.Organization != "" {
			// The binding names an organization of the clinic's records of
			// the role's type (docs/design/security.md PRIV-11).
			st, err := inv.openStore(ctx)
			if err != nil {
				return err
			}
			if err := auth.CheckOrganization(ctx, st, c.Organization, auth.Role(c.Role)); err != nil {
				return err
			}
		}
		if err := save(ctx, inv, *replace, &c); err != nil {
			return err
		}
		fmt.Fprintf(inv.e.stdout, "client %s (%s) saved\n", c.ID, c.Kind)
		if c.Organization != "" {
			fmt.Fprintf(inv.e.stdout, "bound to Organization/%s as %s\n", c.Organization, c.Role)
		}
		if generated != "" {
			fmt.Fprintf(inv.e.stdout, "client_secret: %s\n(shown once: store it now; it cannot be recovered)\n", generated)
		}
		return nil
	}
}

// organizationID is the FHIR id of the organization ORG names: the id of
// "Organization/{id}", else the id mapping gives the clinic's organization
// record ORG.
func organizationID(org string) string {
	if org == "" {
		return ""
	}
	if id, ok := strings.CutPrefix(org, "Organization/"); ok {
		return id
	}
	return mapping.ResourceID(clinic.KindOrganization, org)
}

// save stores a new user or client (a *store.User or *store.Client). One
// whose id exists is refused unless replace, which keeps its creation time.
func save(ctx context.Context, inv *invocation, replace bool, rec any) error {
	st, err := inv.openStore(ctx)
	if err != nil {
		return err
	}
	exists := func(what, id string, err error, created *time.Time, old time.Time) error {
		switch {
		case err == nil && !replace:
			return &exitError{code: 1, msg: fmt.Sprintf("%ss add: %s %s exists (use --replace to replace it)", what, what, id)}
		case err == nil:
			*created = old
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return nil
	}
	switch r := rec.(type) {
	case *store.User:
		old, err := st.GetUser(ctx, r.ID)
		if err = exists("user", r.ID, err, &r.Created, old.Created); err != nil {
			return err
		}
		return st.PutUser(ctx, *r)
	case *store.Client:
		old, err := st.GetClient(ctx, r.ID)
		if err = exists("client", r.ID, err, &r.Created, old.Created); err != nil {
			return err
		}
		return st.PutClient(ctx, *r)
	}
	return fmt.Errorf("save: %T is not a registration", rec)
}

// listing is a list verb: print writes the registry as a table.
func listing(print func(ctx context.Context, st store.AuthStore, w *tabwriter.Writer) error) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action {
		return func(ctx context.Context, inv *invocation) error {
			st, err := inv.openStore(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(inv.e.stdout, 0, 4, 2, ' ', 0)
			if err := print(ctx, st, tw); err != nil {
				return err
			}
			return tw.Flush()
		}
	}
}

// removal is a remove verb: del deletes the entry of --id.
func removal(what string, del func(ctx context.Context, st store.AuthStore, id string) error) func(*flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		id := fs.String("id", "", "the "+what+"'s id")
		return func(ctx context.Context, inv *invocation) error {
			if *id == "" {
				return usageError("%ss remove: --id is required", what)
			}
			st, err := inv.openStore(ctx)
			if err != nil {
				return err
			}
			if err := del(ctx, st, *id); errors.Is(err, store.ErrNotFound) {
				return &exitError{code: 1, msg: fmt.Sprintf("%ss remove: no %s %s", what, what, *id)}
			} else if err != nil {
				return err
			}
			fmt.Fprintf(inv.e.stdout, "%s %s removed\n", what, *id)
			return nil
		}
	}
}

func printUsers(ctx context.Context, st store.AuthStore, tw *tabwriter.Writer) error {
	users, err := st.ListUsers(ctx)
	fmt.Fprintln(tw, "ID\tROLE\tFHIR USER\tNAME\tSTATUS")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Role, orDash(u.FHIRUser), orDash(u.Name), status)
	}
	return err
}

func printClients(ctx context.Context, st store.AuthStore, tw *tabwriter.Writer) error {
	clients, err := st.ListClients(ctx)
	fmt.Fprintln(tw, "ID\tKIND\tROLE\tORGANIZATION\tNAME\tSCOPES\tREDIRECT URIS\tKEYS")
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
		role, org := c.Role, "-"
		if role == "" {
			role = string(auth.RoleEHR)
		}
		if c.Organization != "" {
			org = "Organization/" + c.Organization
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Kind, role, org, orDash(c.Name),
			orDash(strings.Join(c.Scopes, " ")), orDash(strings.Join(c.RedirectURIs, " ")), keys)
	}
	return err
}

func keysRotate(ctx context.Context, inv *invocation) error {
	st, err := inv.openStore(ctx)
	if err != nil {
		return err
	}
	var sealer *auth.KeySealer
	if inv.cfg.KeyEncryptionKey != nil {
		if sealer, err = auth.NewKeySealer(inv.cfg.KeyEncryptionKey); err != nil {
			return err
		}
	}
	ks, err := auth.LoadSealedKeySet(ctx, st, store.SystemClock{}, sealer)
	if err != nil {
		return err
	}
	if err := ks.Rotate(ctx); err != nil {
		return err
	}
	w := inv.e.stdout
	fmt.Fprintln(w, "rotated: the new key signs from now on; retired keys keep verifying for", auth.AccessTTL)
	fmt.Fprintln(w, "(a running gateway picks the new key up when it reloads its keys or restarts)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if err := printKeys(ctx, st, tw); err != nil {
		return err
	}
	return tw.Flush()
}

// printKeys lists the stored keys with their status: current first, then
// the retired ones, most recently retired first.
func printKeys(ctx context.Context, st store.AuthStore, tw *tabwriter.Writer) error {
	keys, err := st.ListKeys(ctx)
	if err != nil || len(keys) == 0 {
		fmt.Fprintln(tw, "no signing keys (serve generates one on first start)")
		return err
	}
	fmt.Fprintln(tw, "KID\tALG\tCREATED\tSTATUS")
	now := time.Now()
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Retired.IsZero() != b.Retired.IsZero() {
			return a.Retired.IsZero()
		}
		if !a.Retired.Equal(b.Retired) {
			return a.Retired.After(b.Retired)
		}
		return a.Created.After(b.Created)
	})
	for _, k := range keys {
		status := "current"
		switch {
		case !k.Retired.IsZero() && now.Before(k.Retired.Add(auth.AccessTTL)):
			status = "retired " + k.Retired.UTC().Format(time.RFC3339) + " (still verifying)"
		case !k.Retired.IsZero():
			status = "retired " + k.Retired.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.KID, orDash(k.Alg), k.Created.UTC().Format(time.RFC3339), status)
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// readSecret reads a password or secret from file ("-" or empty: stdin),
// dropping one trailing line break. Secrets never come from flag values,
// which other users of the machine can read in the process list.
func readSecret(file string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if file == "" || file == "-" {
		if stdin == nil {
			return "", errors.New("no input on stdin")
		}
		b, err = io.ReadAll(io.LimitReader(stdin, 4097))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", err
	}
	if len(b) > 4096 {
		return "", errors.New("longer than 4096 bytes")
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return string(b), nil
}
