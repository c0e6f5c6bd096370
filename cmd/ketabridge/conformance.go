package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/conformance/selftest"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/server"
)

var conformanceCommand = &command{name: "conformance", summary: "check what the gateway emits", verbs: []*command{{
	name: "conformance export", args: "--patients N --out DIR [--seed S]",
	summary: "serve synthetic patients from a temporary store on loopback and write every resource and API response " +
		"the gateway answers (resources.ndjson, api-*.json) and the implementation guide (ig/, ig/vendor/), for an external validator",
	flags: func(fs *flag.FlagSet) action {
		patients := fs.Int("patients", 50, "number of synthetic patients")
		seed := fs.Int64("seed", 1, "random seed")
		out := fs.String("out", "", "output directory (created)")
		return func(ctx context.Context, inv *invocation) error {
			if *out == "" {
				return usageError("conformance export: --out DIR is required")
			}
			if *patients < 1 {
				return usageError("invalid --patients: must be at least 1")
			}
			if err := os.MkdirAll(*out, 0o755); err != nil {
				return err
			}
			res, err := exportConformance(ctx, inv, *patients, *seed, *out)
			if err != nil {
				return fmt.Errorf("conformance export: %w", err)
			}
			fmt.Fprintf(inv.e.stdout, "conformance export: %d resources in %s/resources.ndjson, %d API responses (api-*.json), "+
				"%d Bulk Data export lines (bulk-export.ndjson), %d definitions (ig/), %d vendored definitions (ig/vendor/)\n",
				res.Resources, *out, res.Responses, res.Exported, res.Definitions, res.Vendored)
			return nil
		}
	},
}}}

// exportConformance starts the real gateway in-process on a temporary
// SQLite store (never the configured database) and a loopback listener,
// ingests the synthetic patients, obtains a backend token the way any
// backend client does (a temporary client with a generated key,
// client_credentials with a private_key_jwt assertion) and has
// conformance/selftest drive it over HTTP.
func exportConformance(ctx context.Context, inv *invocation, patients int, seed int64, out string) (selftest.Result, error) {
	var none selftest.Result
	dir, err := os.MkdirTemp("", "ketabridge-conformance-")
	if err != nil {
		return none, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return none, err
	}
	cfg := inv.cfg
	cfg.DataDir, cfg.BaseURL = dir, "http://"+ln.Addr().String()
	cfg.DatabaseURL, cfg.RedisURL, cfg.MetricsAddr, cfg.TLSCert, cfg.TLSKey = "", "", "", "", ""
	if cfg.ClinicOrganization == "" {
		cfg.ClinicOrganization = synth.OrgClinic
	}
	g, err := server.Open(ctx, cfg, inv.logger())
	if err != nil {
		ln.Close()
		return none, err
	}
	defer g.Close()
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()

	raw, err := server.SynthRecords(patients, seed, server.DemoStart)
	if err != nil {
		return none, err
	}
	if _, sum, err := g.Ingester().Ingest(ctx, raw); err != nil || sum.Rejected > 0 {
		return none, fmt.Errorf("ingest of the synthetic records: %v (%d rejected)", err, sum.Rejected)
	}
	if err := referralSamples(ctx, g, raw, cfg.TokenEndpoint(), cfg.FHIRBase(), out); err != nil {
		return none, err
	}
	bk, err := auth.NewBackendKey("ketabridge-conformance")
	if err != nil {
		return none, err
	}
	client, err := bk.Client("KetaBridge conformance export", "system/*.rs", time.Now())
	if err == nil {
		err = g.RegisterClient(ctx, client)
	}
	if err != nil {
		return none, err
	}
	hc := &http.Client{Timeout: time.Minute}
	tok := renewing(bk, hc, cfg.TokenEndpoint())
	// The views of a payer and a partner (docs/access.md), so their answers
	// (reduced Patients among them) are validated too.
	var outside []selftest.OutsideToken
	for _, b := range []struct{ name, org string }{
		{"payer", synth.OrgPayerBlueHeron}, {"partner", synth.OrgPartnerRiverbend},
	} {
		k, err := auth.NewBackendKey("ketabridge-conformance-" + b.name)
		if err != nil {
			return none, err
		}
		c, err := k.Client("KetaBridge conformance export ("+b.name+")", "system/*.rs", time.Now())
		if err != nil {
			return none, err
		}
		c.Organization, c.Role = mapping.ResourceID(clinic.KindOrganization, b.org), b.name
		if err := g.RegisterClient(ctx, c); err != nil {
			return none, err
		}
		outside = append(outside, selftest.OutsideToken{Name: b.name, Token: renewing(k, hc, cfg.TokenEndpoint())})
	}
	return selftest.Export(ctx, selftest.Options{Base: cfg.BaseURL, Token: tok, Client: hc, Out: out, Outside: outside})
}

// renewing is a token source for the export's client k: a token is used
// for at most a minute, then a new one is asked for, so an export slower
// than a token's lifetime (a loaded machine) is not cut off with 401s.
func renewing(k *auth.BackendKey, hc *http.Client, tokenURL string) selftest.TokenSource {
	var (
		mu   sync.Mutex
		tok  string
		when time.Time
	)
	return func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok != "" && time.Since(when) < time.Minute {
			return tok, nil
		}
		t, err := k.AccessToken(ctx, hc, tokenURL, tokenURL, "system/*.rs")
		if err != nil {
			return "", err
		}
		tok, when = t, time.Now()
		return tok, nil
	}
}

// referralSamples writes, before the export reads the store, what the
// referral write path stores (docs/referrals.md), so the validator checks
// it against the guide like everything else: an inbound referral from a
// partner whose Patient matches a clinic patient by identifier (the Task's
// patient-match and matched-patient inputs, the referred-patient tag, the
// partner's Provenance), and a referral the clinic sends another partner,
// closed when a deny Consent for the partner is recorded (the
// closed Task, its statusReason and Provenance; docs/design/security.md
// RFL-6).
func referralSamples(ctx context.Context, g *server.Gateway, raw []json.RawMessage, tokenURL, fhirBase, out string) error {
	var pat string
	for _, r := range raw {
		var h struct{ Kind, ID string }
		if json.Unmarshal(r, &h) == nil && h.Kind == string(clinic.KindPatient) {
			pat = h.ID
			break
		}
	}
	if pat == "" {
		return fmt.Errorf("conformance export: no patient to refer")
	}
	stored, err := g.Store().Read(ctx, "Patient", mapping.ResourceID(clinic.KindPatient, pat))
	if err != nil {
		return err
	}
	var p struct {
		Identifier []json.RawMessage `json:"identifier"`
	}
	if err := json.Unmarshal(stored.Body, &p); err != nil || len(p.Identifier) == 0 {
		return fmt.Errorf("conformance export: the patient has no identifier (%v)", err)
	}
	partner := mapping.ResourceID(clinic.KindOrganization, synth.OrgPartnerRiverbend)
	clinicOrg := mapping.ResourceID(clinic.KindOrganization, synth.OrgClinic)
	entry := func(full string, res map[string]any) map[string]any {
		return map[string]any{"fullUrl": full, "resource": res,
			"request": map[string]any{"method": "POST", "url": res["resourceType"]}}
	}
	const (
		taskURL    = "urn:uuid:5a0f2b8e-3c1d-4f6a-9b7e-0d2c4e6f8a10"
		srURL      = "urn:uuid:5a0f2b8e-3c1d-4f6a-9b7e-0d2c4e6f8a11"
		patientURL = "urn:uuid:5a0f2b8e-3c1d-4f6a-9b7e-0d2c4e6f8a12"
	)
	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		entry(taskURL, map[string]any{"resourceType": "Task", "status": "requested", "intent": "order",
			"focus": map[string]any{"reference": srURL}, "for": map[string]any{"reference": patientURL},
			"authoredOn": "2026-11-30T10:00:00Z",
			"requester":  map[string]any{"reference": "Organization/" + partner},
			"owner":      map[string]any{"reference": "Organization/" + clinicOrg}}),
		entry(srURL, map[string]any{"resourceType": "ServiceRequest", "status": "active", "intent": "order",
			"identifier": []any{map[string]any{"system": "https://riverbend.example.org/referrals", "value": "RB-CONFORMANCE-1"}},
			"code": map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "3457005",
				"display": "Patient referral"}}, "text": "Ketamine-assisted therapy evaluation"},
			"subject":   map[string]any{"reference": patientURL},
			"requester": map[string]any{"reference": "Organization/" + partner}}),
		entry(patientURL, map[string]any{"resourceType": "Patient", "identifier": p.Identifier}),
	}}
	body, err := json.Marshal(bundle)
	if err != nil {
		return err
	}
	k, err := auth.NewBackendKey("ketabridge-conformance-referral")
	if err != nil {
		return err
	}
	const scope = "system/Task.c system/ServiceRequest.c system/Patient.c"
	c, err := k.Client("KetaBridge conformance export (referral)", scope, time.Now())
	if err != nil {
		return err
	}
	c.Organization, c.Role = partner, "partner"
	if err := g.RegisterClient(ctx, c); err != nil {
		return err
	}
	hc := &http.Client{Timeout: time.Minute}
	tok, err := k.AccessToken(ctx, hc, tokenURL, tokenURL, scope)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fhirBase, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var tr struct {
		Entry []struct {
			Response struct{ Location string } `json:"response"`
		} `json:"entry"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(answer, &tr) != nil || len(tr.Entry) == 0 {
		return fmt.Errorf("conformance export: the sample referral was answered %d", resp.StatusCode)
	}
	// The answer itself is validated with the other API responses.
	if err := os.WriteFile(filepath.Join(out, "api-referral-transaction-response.json"), answer, 0o644); err != nil {
		return err
	}
	taskID, _, _ := strings.Cut(strings.TrimPrefix(tr.Entry[0].Response.Location, "Task/"), "/")
	in, err := g.Store().Read(ctx, "Task", taskID)
	if err != nil {
		return err
	}
	if !bytes.Contains(in.Body, []byte(`"match-identifier"`)) {
		return fmt.Errorf("conformance export: the sample referral's patient was not matched by identifier")
	}
	// The clinic refers the patient to another partner (not the one whose
	// view the export captures); a deny Consent for it is recorded, and
	// the gateway closes the referral.
	recs := []json.RawMessage{
		json.RawMessage(`{"kind":"referral","id":"ref-conformance-1","patientId":"` + pat + `","partnerId":"` +
			synth.OrgPartnerNorthgate + `","reason":"F33.2","service":"Psychotherapy after ketamine induction",` +
			`"authoredOn":"2026-11-30T10:00:00Z"}`),
		json.RawMessage(`{"kind":"consent","id":"consent-conformance-deny","patientId":"` + pat + `","status":"active",` +
			`"decision":"deny","dateTime":"2026-12-01T09:00:00Z","recipientIds":["` + synth.OrgPartnerNorthgate + `"],` +
			`"purposes":["treatment"]}`),
	}
	if _, sum, err := g.Ingester().Ingest(ctx, recs); err != nil || sum.Rejected > 0 {
		return fmt.Errorf("conformance export: the sample referral records: %v (%d rejected)", err, sum.Rejected)
	}
	task, err := g.Store().Read(ctx, "Task", mapping.ResourceID(clinic.KindReferral, "ref-conformance-1", "Task"))
	if err != nil {
		return err
	}
	if !bytes.Contains(task.Body, []byte(`"consent-withdrawn"`)) {
		return fmt.Errorf("conformance export: the sample referral was not closed on the deny consent")
	}
	return nil
}
