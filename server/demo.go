package server

import (
	"bytes"
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
	"github.com/ketabridge/ketabridge/ingestapi"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
)

// The demo data set of `serve --demo`: fixed, so re-running --demo
// produces identical records (all unchanged).
const (
	DemoPatients = 12
	demoSeed     = 1
)

// DemoStart is the first treatment day of the demo and the synthetic data
// sets.
var DemoStart = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

// Demo registrations made by RegisterDemo.
const (
	demoAppID        = "demo-app"
	demoAppRedirect  = "http://localhost:8765/callback"
	demoAppLaunch    = "http://localhost:8765/launch"
	demoAppOrigin    = "http://localhost:8765"
	demoBackendID    = "demo-backend"
	demoBackendScope = "system/*.rs " + ingestapi.Scope
	demoAppScope     = "openid fhirUser profile launch launch/patient offline_access online_access patient/*.rs user/*.rs"
	demoCredsFile    = "demo-credentials.json"
	demoKeyFile      = "demo-backend.key.pem"
	defaultBaseURL   = "http://localhost:8080"
)

// DemoLongCourse is the session count of the first synthetic patient's
// course (synth.Options.LongCourse): the course viewer's load time is
// measured on a course of this size (docs/course-viewer.md).
const DemoLongCourse = 40

// SynthRecords generates the synthetic clinic records of patients patients
// (mapping/synth) as one JSON value each; the first patient's course has
// DemoLongCourse sessions.
func SynthRecords(patients int, seed int64, start time.Time) ([]json.RawMessage, error) {
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: patients, Seed: seed, Start: start, LongCourse: DemoLongCourse}); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	var out []json.RawMessage
	for l := range bytes.Lines(buf.Bytes()) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			out = append(out, json.RawMessage(l))
		}
	}
	return out, nil
}

// LoadDemo ingests the demo data set (idempotent: a second run is all
// unchanged).
func (d *Data) LoadDemo(ctx context.Context) error {
	raw, err := SynthRecords(DemoPatients, demoSeed, DemoStart)
	if err != nil {
		return err
	}
	_, sum, err := d.ingest.Ingest(ctx, raw)
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	d.log.Info("demo data ingested", "records", len(raw), "created", sum.Created, "updated", sum.Updated,
		"unchanged", sum.Unchanged, "rejected", sum.Rejected, "resources", sum.Resources)
	if sum.Rejected > 0 {
		return fmt.Errorf("demo data: %d synthetic records were rejected", sum.Rejected)
	}
	return nil
}

// demoCreds are the demo logins' passwords, generated once per data dir.
type demoCreds struct {
	Clinician string `json:"clinician"`
	Patient   string `json:"patient"`
}

// RegisterDemo registers the demo users and clients (idempotent: the
// passwords and the backend key are generated once and kept in the data
// dir, readable by its owner only) and prints how to use them to w.
func (g *Gateway) RegisterDemo(ctx context.Context, w io.Writer) error {
	as, ok := g.store.(store.AuthStore)
	if !ok {
		return errors.New("demo: the store does not keep auth state")
	}
	patientID, practitionerID, err := demoPeople()
	if err != nil {
		return err
	}
	creds, err := g.demoCredentials()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, r := range []auth.UserRegistration{
		{ID: "clinician", Password: creds.Clinician, FHIRUser: "Practitioner/" + practitionerID, Name: "Demo Clinician", Role: store.RoleClinician},
		{ID: "patient", Password: creds.Patient, FHIRUser: "Patient/" + patientID, Name: "Demo Patient", Role: store.RolePatient},
	} {
		u, err := auth.NewUser(r, now)
		if err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
		if err := as.PutUser(ctx, u); err != nil {
			return fmt.Errorf("demo user: %w", err)
		}
	}
	app, _, err := auth.NewClient(auth.ClientRegistration{ID: demoAppID, Name: "Demo SMART app", Kind: store.ClientPublic,
		RedirectURIs: []string{demoAppRedirect}, LaunchURL: demoAppLaunch, Scopes: strings.Fields(demoAppScope),
		Origins: []string{demoAppOrigin}}, now)
	if err == nil {
		err = as.PutClient(ctx, app)
	}
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	keyPath := filepath.Join(g.cfg.DataDir, demoKeyFile)
	bk, err := demoBackendKey(keyPath)
	if err != nil {
		return err
	}
	backend, err := bk.Client("Demo backend (EHR / insurer)", demoBackendScope, now)
	if err == nil {
		err = as.PutClient(ctx, backend)
	}
	if err != nil {
		return fmt.Errorf("demo backend client: %w", err)
	}
	g.printDemo(w, creds, keyPath)
	return nil
}

// printDemo prints the demo registrations and the commands that use them.
func (g *Gateway) printDemo(w io.Writer, creds demoCreds, keyPath string) {
	baseFlag := ""
	if g.cfg.BaseURL != defaultBaseURL {
		baseFlag = " --base-url " + g.cfg.BaseURL
	}
	fmt.Fprintf(w, `
Demo registrations (--demo; passwords in %s):
  logins:   clinician / %s      patient / %s
  viewer:   %s/apps/course/ (sign in as patient; clinicians pick a patient, or launch it from %s/auth/launch)
  app:      %s (public, redirect %s)
  backend:  %s (key %s, scopes %q)
  token:    TOKEN=$(go run ./cmd/ketabridge token --client %s --key %s --scope 'system/*.rs'%s)
  request:  curl -H "Authorization: Bearer $TOKEN" '%s/Patient?_count=3'
`, filepath.Join(g.cfg.DataDir, demoCredsFile), creds.Clinician, creds.Patient, g.cfg.BaseURL, g.cfg.BaseURL,
		demoAppID, demoAppRedirect,
		demoBackendID, keyPath, demoBackendScope, demoBackendID, keyPath, baseFlag, g.cfg.FHIRBase())
}

// demoPeople returns the FHIR ids of the first Patient and Practitioner of
// the demo data set: the demo logins' fhirUser.
func demoPeople() (patientID, practitionerID string, err error) {
	raw, err := SynthRecords(DemoPatients, demoSeed, DemoStart)
	if err != nil {
		return "", "", err
	}
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
		return "", "", errors.New("demo: synthetic data has no patient or practitioner")
	}
	return patientID, practitionerID, nil
}

// demoCredentials reads the demo passwords, generating them on first use.
func (g *Gateway) demoCredentials() (demoCreds, error) {
	path := filepath.Join(g.cfg.DataDir, demoCredsFile)
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
func demoBackendKey(path string) (*auth.BackendKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		k, err := auth.ParseBackendKey(demoBackendID, b)
		if err != nil {
			return nil, fmt.Errorf("demo: %s: %w", path, err)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	bk, err := auth.NewBackendKey(demoBackendID)
	if err != nil {
		return nil, err
	}
	pemBytes, err := bk.PrivatePEM()
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
