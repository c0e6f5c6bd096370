package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

const usersUsage = "users add --id ID --role clinician|patient|admin --fhir-user Practitioner/ID|Patient/ID " +
	"[--name NAME] [--password-file FILE] [--replace] | users list | users remove --id ID"

// minPasswordLen is the shortest password users add accepts (NIST SP 800-63B
// §5.1.1.2: at least 8 characters).
const minPasswordLen = 8

// fhirIDPattern is the FHIR id datatype (datatypes.html#id).
var fhirIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// cmdUsers administers the logins of the authorization server. The password
// is read from --password-file or stdin, never from a flag value.
func cmdUsers(ctx context.Context, args []string, e env) error {
	return verbCommand("users", args, map[string]func([]string) error{
		"add":    func(a []string) error { return usersAdd(ctx, a, e) },
		"list":   func(a []string) error { return usersList(ctx, a, e) },
		"remove": func(a []string) error { return usersRemove(ctx, a, e) },
	}, usersUsage)
}

func usersAdd(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("users add")
	id := cf.fs.String("id", "", "login name")
	role := cf.fs.String("role", "", "clinician, patient or admin")
	fhirUser := cf.fs.String("fhir-user", "", "the user's FHIR resource: Practitioner/ID or Patient/ID")
	name := cf.fs.String("name", "", "display name")
	pwFile := cf.fs.String("password-file", "", "file holding the password (default: read stdin)")
	replace := cf.fs.Bool("replace", false, "replace an existing user of this id (e.g. to reset the password)")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	u := store.User{ID: *id, Name: strings.TrimSpace(*name), Role: store.UserRole(*role), FHIRUser: *fhirUser}
	if err := validateUser(u); err != nil {
		return &usageError{msg: "users add: " + err.Error()}
	}
	pw, err := readSecret(*pwFile, e.stdin)
	if err != nil {
		return &exitError{code: 1, msg: "users add: cannot read the password: " + err.Error()}
	}
	if len([]rune(pw)) < minPasswordLen {
		return &usageError{msg: fmt.Sprintf("users add: the password must have at least %d characters", minPasswordLen)}
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	old, err := st.GetUser(ctx, u.ID)
	switch {
	case err == nil && !*replace:
		return &exitError{code: 1, msg: "users add: user " + u.ID + " exists (use --replace to replace it)"}
	case err == nil:
		u.Created = old.Created
	case errors.Is(err, store.ErrNotFound):
		u.Created = time.Now().UTC()
	default:
		return err
	}
	if u.PasswordHash, err = auth.HashPassword(pw); err != nil {
		return err
	}
	if err := st.PutUser(ctx, u); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "user %s (%s, %s) saved\n", u.ID, u.Role, orDash(u.FHIRUser))
	return nil
}

// validateUser checks the id, role and fhirUser of a user: a clinician is a
// Practitioner, a patient a Patient, an admin either or none.
func validateUser(u store.User) error {
	if !validID(u.ID) {
		return errors.New("--id must be 1 to 64 characters without spaces")
	}
	var want []string
	switch u.Role {
	case store.RoleClinician:
		want = []string{"Practitioner"}
	case store.RolePatient:
		want = []string{"Patient"}
	case store.RoleAdmin:
		if u.FHIRUser == "" {
			return nil
		}
		want = []string{"Practitioner", "Patient"}
	default:
		return errors.New("--role must be clinician, patient or admin")
	}
	typ, fid, ok := strings.Cut(u.FHIRUser, "/")
	if !ok || !fhirIDPattern.MatchString(fid) || !contains(want, typ) {
		return fmt.Errorf("--fhir-user must be %s/ID for a %s (ID a FHIR id)", strings.Join(want, "/ID or "), u.Role)
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func usersList(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("users list")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tFHIR USER\tNAME\tSTATUS")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Role, orDash(u.FHIRUser), orDash(u.Name), status)
	}
	return tw.Flush()
}

func usersRemove(ctx context.Context, args []string, e env) error {
	cf := newFlagSet("users remove")
	id := cf.fs.String("id", "", "login name")
	cfg, err := parseNoArgs(cf, args, e)
	if err != nil {
		return err
	}
	if *id == "" {
		return &usageError{msg: "users remove: --id is required"}
	}
	st, err := openAuthStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.DeleteUser(ctx, *id); errors.Is(err, store.ErrNotFound) {
		return &exitError{code: 1, msg: "users remove: no user " + *id}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "user %s removed\n", *id)
	return nil
}
