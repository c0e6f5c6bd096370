package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/store"
)

// Demo registrations made by `serve --demo`.
const (
	demoAppID        = "demo-app"
	demoAppRedirect  = "http://localhost:8765/callback"
	demoAppLaunch    = "http://localhost:8765/launch"
	demoBackendID    = "demo-backend"
	demoBackendScope = "system/*.rs " + ingestScope
	demoAppScope     = "openid fhirUser profile launch launch/patient offline_access online_access patient/*.rs user/*.rs"
	demoCredsFile    = "demo-credentials.json"
	demoKeyFile      = "demo-backend.key.pem"
)

// demoCreds are the demo logins' passwords, generated once per data dir.
type demoCreds struct {
	Clinician string `json:"clinician"`
	Patient   string `json:"patient"`
}

// registerDemo registers the demo users and clients (idempotent: the
// passwords and the backend key are generated once and kept in the data
// dir, readable by its owner only) and prints how to use them.
func (a *app) registerDemo(ctx context.Context, w io.Writer) error {
	as, ok := a.store.(store.AuthStore)
	if !ok {
		return fmt.Errorf("demo: the store does not keep auth state")
	}
	raw, err := synthRecords(demoPatients, demoSeed, demoStart)
	if err != nil {
		return err
	}
	var patientID, practitionerID string
	for _, r := range raw {
		var h clinic.Header
		if json.Unmarshal(r, &h) != nil {
			continue
		}
		switch {
		case h.Kind == clinic.KindPatient && patientID == "":
			patientID = mapping.ResourceID(clinic.KindPatient, h.ID)
		case h.Kind == clinic.KindPractitioner && practitionerID == "":
			practitionerID = mapping.ResourceID(clinic.KindPractitioner, h.ID)
		}
	}
	if patientID == "" || practitionerID == "" {
		return fmt.Errorf("demo: synthetic data has no patient or practitioner")
	}

	creds, err := a.demoCredentials()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, u := range []struct {
		id, pw, fhirUser, name string
		role                   store.UserRole
	}{
		{"clinician", creds.Clinician, "Practitioner/" + practitionerID, "Demo Clinician", store.RoleClinician},
		{"patient", creds.Patient, "Patient/" + patientID, "Demo Patient", store.RolePatient},
	} {
		hash, err := auth.HashPassword(u.pw)
		if err != nil {
			return err
		}
		if err := as.PutUser(ctx, store.User{ID: u.id, Name: u.name, Role: u.role, PasswordHash: hash,
			FHIRUser: u.fhirUser, Created: now}); err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
	}
	if err := as.PutClient(ctx, store.Client{ID: demoAppID, Name: "Demo SMART app", Kind: store.ClientPublic,
		RedirectURIs: []string{demoAppRedirect}, LaunchURL: demoAppLaunch, Scopes: strings.Fields(demoAppScope),
		Origins: []string{"http://localhost:8765"}, Created: now}); err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	keyPath := filepath.Join(a.cfg.DataDir, demoKeyFile)
	bk, err := a.demoBackendKey(keyPath)
	if err != nil {
		return err
	}
	if err := registerBackend(ctx, as, bk, "Demo backend (EHR / insurer)", demoBackendScope); err != nil {
		return fmt.Errorf("demo backend client: %w", err)
	}

	fhirBase := a.cfg.FHIRBase()
	fmt.Fprintf(w, `
Demo registrations (--demo; passwords in %s):
  logins:   clinician / %s      patient / %s
  app:      %s (public, redirect %s)
  backend:  %s (key %s, scopes %q)
  token:    TOKEN=$(go run ./cmd/ketabridge token --data-dir %s --client %s --key %s)
  request:  curl -H "Authorization: Bearer $TOKEN" '%s/Patient?_count=3'
`, filepath.Join(a.cfg.DataDir, demoCredsFile), creds.Clinician, creds.Patient, demoAppID, demoAppRedirect,
		demoBackendID, keyPath, demoBackendScope, a.cfg.DataDir, demoBackendID, keyPath, fhirBase)
	return nil
}

// demoCredentials reads the demo passwords, generating them on first use.
func (a *app) demoCredentials() (demoCreds, error) {
	path := filepath.Join(a.cfg.DataDir, demoCredsFile)
	var c demoCreds
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.Clinician == "" || c.Patient == "" {
			return c, fmt.Errorf("demo: %s is damaged; delete it to make new demo passwords", path)
		}
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return c, err
	}
	c = demoCreds{Clinician: randomPassword(), Patient: randomPassword()}
	b, _ = json.Marshal(c)
	return c, os.WriteFile(path, b, 0o600)
}

// demoBackendKey loads the demo backend's key, generating it on first use.
func (a *app) demoBackendKey(path string) (*backendKey, error) {
	aud := a.cfg.BaseURL + "/auth/token"
	if b, err := os.ReadFile(path); err == nil {
		k, err := parsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("demo: %s: %w", path, err)
		}
		return &backendKey{clientID: demoBackendID, key: k, aud: aud}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	bk, err := newBackendKey(demoBackendID, aud)
	if err != nil {
		return nil, err
	}
	pemBytes, err := bk.privatePEM()
	if err != nil {
		return nil, err
	}
	return bk, os.WriteFile(path, pemBytes, 0o600)
}

// randomPassword is 15 random bytes, base64url (20 characters).
func randomPassword() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
