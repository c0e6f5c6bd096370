package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
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
