package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/bulkclient"
)

var exportCommand = &command{
	name: "export", args: "--base URL --client ID --key FILE [--group ID | --patient] [--type T,...] [--since T] [--parallel N] --out DIR",
	summary: "run a Bulk Data export as a backend client: kick-off, poll with progress, download the NDJSON files",
	flags: func(fs *flag.FlagSet) action {
		base := fs.String("base", "", "FHIR base URL of the server, e.g. https://gateway.example/fhir")
		clientID := fs.String("client", "", "registered backend client id")
		keyFile := fs.String("key", "", "PEM private key (PKCS#8 or PKCS#1 RSA, or EC P-384) of the client")
		kid := fs.String("kid", "", "key id registered in the client's JWKS (default: the key's RFC 7638 thumbprint)")
		scope := fs.String("scope", "system/*.rs", "scopes to request")
		group := fs.String("group", "", "export Group/{ID} (e.g. payer-{Organization id})")
		patient := fs.Bool("patient", false, "export at the Patient level (every patient's compartment)")
		types := fs.String("type", "", "comma-separated resource types (_type)")
		typeFilter := fs.String("type-filter", "", "a _typeFilter, e.g. Observation?category=survey")
		since := fs.String("since", "", "only what changed after this instant (_since), e.g. a previous transactionTime")
		out := fs.String("out", "", "directory to write the files and manifest.json to")
		parallel := fs.Int("parallel", defaultExportParallel, fmt.Sprintf("files downloaded at once (1-%d)", maxExportParallel))
		attempts := fs.Int("attempts", defaultExportAttempts, "tries of each file download; a broken one resumes where it stopped (a Range request)")
		return func(ctx context.Context, inv *invocation) error {
			if *base == "" || *clientID == "" || *keyFile == "" || *out == "" {
				return usageError("export: --base, --client, --key and --out are required")
			}
			if *parallel < 1 || *parallel > maxExportParallel {
				return usageError("export: --parallel must be 1 to %d", maxExportParallel)
			}
			if *attempts < 1 {
				return usageError("export: --attempts must be at least 1")
			}
			req := bulkclient.Request{Base: strings.TrimSuffix(*base, "/"), Group: *group, Patient: *patient}
			if *types != "" {
				req.Types = strings.Split(*types, ",")
			}
			if *typeFilter != "" {
				req.TypeFilters = []string{*typeFilter}
			}
			if *since != "" {
				t, err := time.Parse(time.RFC3339Nano, *since)
				if err != nil {
					return usageError("export: --since must be an instant such as 2024-03-01T10:00:00Z")
				}
				req.Since = t
			}
			pemBytes, err := os.ReadFile(*keyFile)
			if err != nil {
				return fmt.Errorf("export: cannot read --key: %v", err)
			}
			bk, err := auth.ParseBackendKey(*clientID, pemBytes)
			if err != nil {
				return fmt.Errorf("export: --key: %v", err)
			}
			bk.KID = *kid
			if err := os.MkdirAll(*out, 0o750); err != nil {
				return fmt.Errorf("export: %v", err)
			}
			hc := &http.Client{Transport: bulkclient.Transport()} // no timeout: files stream as long as they take
			tokenURL, err := discoverTokenURL(ctx, req.Base)
			if err != nil {
				return fmt.Errorf("export: %v", err)
			}
			c := &bulkclient.Client{HTTP: hc, Token: cachedToken(func(ctx context.Context) (string, error) {
				return bk.AccessToken(ctx, &http.Client{Timeout: 30 * time.Second}, tokenURL, tokenURL, *scope)
			})}
			e := inv.e
			var bar *progressbar.ProgressBar
			if e.stderrTerminal {
				bar = progressbar.NewOptions(100, progressbar.OptionSetWriter(e.stderr),
					progressbar.OptionSetDescription("exporting"), progressbar.OptionThrottle(100*time.Millisecond))
				c.Progress = func(p string) {
					var pct int
					if _, err := fmt.Sscanf(p, "%d%%", &pct); err == nil {
						_ = bar.Set(pct)
					}
				}
			}
			start := time.Now()
			status, err := c.Kickoff(ctx, req)
			if err != nil {
				return fmt.Errorf("export: kick-off: %v", err)
			}
			m, err := c.Wait(ctx, status)
			if err != nil {
				return fmt.Errorf("export: %v", err)
			}
			if bar != nil {
				_ = bar.Finish()
			}
			var resources int
			var files []bulkclient.File
			for _, l := range []struct {
				kind string
				list []bulkclient.Output
			}{{"output", m.Output}, {"deleted", m.Deleted}, {"error", m.Error}} {
				for i, o := range l.list {
					files = append(files, bulkclient.File{URL: o.URL, Path: bulkclient.FileName(*out, l.kind, i, o)})
					if l.kind == "output" {
						resources += o.Count
					}
				}
			}
			bytes, err := c.DownloadAll(ctx, files, *parallel, *attempts)
			if err != nil {
				return fmt.Errorf("export: download: %v", err)
			}
			mb, _ := json.MarshalIndent(m, "", "  ")
			if err := os.WriteFile(*out+"/manifest.json", append(mb, '\n'), 0o600); err != nil {
				return fmt.Errorf("export: %v", err)
			}
			took := time.Since(start)
			fmt.Fprintf(e.stdout, "exported %d resources (%d bytes, %d files) in %s: %.0f resources/s; transactionTime %s\n",
				resources, bytes, len(m.Output)+len(m.Deleted)+len(m.Error), took.Round(time.Millisecond),
				float64(resources)/took.Seconds(), m.TransactionTime)
			return nil
		}
	},
}

// The export command's downloads: files at once by default and at most,
// and tries of each file.
const (
	defaultExportParallel = bulkclient.DefaultParallel
	maxExportParallel     = 8
	defaultExportAttempts = 4
)

// discoverTokenURL reads the token endpoint from the server's SMART
// configuration ({base}/.well-known/smart-configuration); it is also the
// audience of the client assertion (docs/design/security.md CLI-2).
func discoverTokenURL(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/smart-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var cfg struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&cfg) != nil || cfg.TokenEndpoint == "" {
		return "", fmt.Errorf("no token endpoint in %s/.well-known/smart-configuration (HTTP %d)", base, resp.StatusCode)
	}
	return cfg.TokenEndpoint, nil
}

// cachedToken reuses a token for two minutes (backend tokens live five).
func cachedToken(get func(context.Context) (string, error)) func(context.Context) (string, error) {
	var mu sync.Mutex
	var tok string
	var at time.Time
	return func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok != "" && time.Since(at) < 2*time.Minute {
			return tok, nil
		}
		t, err := get(ctx)
		if err != nil {
			return "", err
		}
		tok, at = t, time.Now()
		return tok, nil
	}
}
