package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/synth"
)

// TestGatewayServes assembles a gateway from a Config, serves it on a
// loopback listener and uses it as a backend client would: a client
// registered through the gateway, a token from its token endpoint, FHIR
// reads; then the operability endpoints, and a graceful shutdown.
func TestGatewayServes(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests the demo data set")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg, err := parse([]string{"--data-dir", t.TempDir(), "--base-url", base,
		"--clinic-organization", synth.OrgClinic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.LoadDemo(ctx); err != nil {
		t.Fatal(err)
	}
	bk, err := auth.NewBackendKey("gateway-test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := bk.Client("test", "system/*.rs", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.RegisterClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()

	tok, err := bk.AccessToken(ctx, http.DefaultClient, cfg.TokenEndpoint(), cfg.TokenEndpoint(), "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	get := func(t *testing.T, path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	t.Run("Provenance agents reference the configured clinic organization", func(t *testing.T) {
		status, body := get(t, "/fhir/Provenance?_count=500", tok)
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, body)
		}
		var bundle struct {
			Entry []struct {
				Resource struct {
					Agent []struct {
						Who struct {
							Reference string `json:"reference"`
						} `json:"who"`
					} `json:"agent"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &bundle); err != nil || len(bundle.Entry) == 0 {
			t.Fatalf("%v, %d entries", err, len(bundle.Entry))
		}
		org := "Organization/" + mapping.ResourceID(clinic.KindOrganization, synth.OrgClinic)
		for i, e := range bundle.Entry {
			ag := e.Resource.Agent
			if len(ag) != 2 || ag[1].Who.Reference != org || ag[0].Who.Reference == "" {
				t.Fatalf("Provenance %d agents %+v, want references with the transmitter %s", i, ag, org)
			}
		}
	})
	t.Run("no token, no data", func(t *testing.T) {
		if status, _ := get(t, "/fhir/Patient", ""); status != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", status)
		}
	})
	t.Run("operability", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`,
			"/metrics": `ketabridge_http_requests_total{code="200",route="/fhir/:type"}`} {
			status, body := get(t, path, "")
			if status != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("%s: %d, no %s in %.300s", path, status, want, body)
			}
		}
	})

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}
