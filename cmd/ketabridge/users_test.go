package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

func TestUsersCommand(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	data := tmp + "/data"
	const pw1, pw2, pw3 = "first-Passw0rd", "second-Passw0rd", "patient-Passw0rd"
	pwFile := writeFile(t, tmp, "pw", pw1+"\n")

	steps := []struct {
		name  string
		stdin string
		args  []string
		code  int
		out   string // substring of stdout (code 0) or stderr
	}{
		{"add clinician from file", "", []string{"users", "add", "--id", "dr.lee", "--role", "clinician",
			"--fhir-user", "Practitioner/pr-1", "--name", "Dr Lee", "--password-file", pwFile}, 0, "user dr.lee (clinician, Practitioner/pr-1) saved"},
		{"add patient from stdin", pw3 + "\n", []string{"users", "add", "--id", "pat1", "--role", "patient",
			"--fhir-user", "Patient/p-1"}, 0, "user pat1"},
		{"add admin without fhir user", pw3, []string{"users", "add", "--id", "root", "--role", "admin"}, 0, "user root"},
		{"duplicate refused", pw2, []string{"users", "add", "--id", "dr.lee", "--role", "clinician",
			"--fhir-user", "Practitioner/pr-1"}, 1, "exists"},
		{"replace resets the password", pw2, []string{"users", "add", "--id", "dr.lee", "--role", "clinician",
			"--fhir-user", "Practitioner/pr-1", "--replace"}, 0, "saved"},
		{"bad role", pw2, []string{"users", "add", "--id", "x", "--role", "nurse", "--fhir-user", "Practitioner/a"}, 2, "--role"},
		{"clinician as patient", pw2, []string{"users", "add", "--id", "x", "--role", "clinician", "--fhir-user", "Patient/a"}, 2, "--fhir-user"},
		{"patient without fhir user", pw2, []string{"users", "add", "--id", "x", "--role", "patient"}, 2, "--fhir-user"},
		{"fhir user id invalid", pw2, []string{"users", "add", "--id", "x", "--role", "patient", "--fhir-user", "Patient/a b"}, 2, "--fhir-user"},
		{"missing id", pw2, []string{"users", "add", "--role", "admin"}, 2, "--id"},
		{"id with space", pw2, []string{"users", "add", "--id", "a b", "--role", "admin"}, 2, "--id"},
		{"short password", "short\n", []string{"users", "add", "--id", "x", "--role", "admin"}, 2, "at least 8"},
		{"no password flag", pw2, []string{"users", "add", "--id", "x", "--role", "admin", "--password", pw2}, 2, "flag provided but not defined"},
		{"missing password file", "", []string{"users", "add", "--id", "x", "--role", "admin", "--password-file", tmp + "/nope"}, 1, "cannot read the password"},
		{"positional argument", pw2, []string{"users", "add", "--id", "x", "--role", "admin", "extra"}, 2, "unexpected argument"},
		{"list", "", []string{"users", "list"}, 0, "dr.lee"},
		{"remove", "", []string{"users", "remove", "--id", "root"}, 0, "user root removed"},
		{"remove again", "", []string{"users", "remove", "--id", "root"}, 1, "no user root"},
		{"remove without id", "", []string{"users", "remove"}, 2, "--id is required"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := runCLI(t, data, st.stdin, st.args...)
			if r.code != st.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", r.code, st.code, r.stdout, r.stderr)
			}
			got := r.stderr
			if st.code == 0 {
				got = r.stdout
			}
			if !strings.Contains(got, st.out) {
				t.Errorf("output %q does not contain %q", got, st.out)
			}
			for _, secret := range []string{pw1, pw2, pw3, "$argon2id$"} {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Errorf("output shows a password or hash: %q", r.stdout+r.stderr)
				}
			}
		})
	}

	st := openData(t, data)
	t.Run("stored users", func(t *testing.T) {
		tests := []struct {
			id, fhirUser, pw string
			role             store.UserRole
		}{
			{"dr.lee", "Practitioner/pr-1", pw2, store.RoleClinician},
			{"pat1", "Patient/p-1", pw3, store.RolePatient},
		}
		for _, tc := range tests {
			u, err := st.GetUser(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if u.Role != tc.role || u.FHIRUser != tc.fhirUser || u.Disabled || u.Created.IsZero() {
				t.Errorf("user %s = %+v", tc.id, u)
			}
			if !auth.CheckPassword(u.PasswordHash, tc.pw) {
				t.Errorf("user %s: the password does not verify against the stored hash", tc.id)
			}
		}
		u, _ := st.GetUser(ctx, "dr.lee")
		if auth.CheckPassword(u.PasswordHash, pw1) || u.Name != "" {
			t.Errorf("--replace kept the old password or name: %+v", u)
		}
		if _, err := st.GetUser(ctx, "root"); err == nil {
			t.Error("removed user still stored")
		}
	})
}
