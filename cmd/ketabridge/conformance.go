package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// tempApp opens an app on a fresh SQLite store in a temporary directory,
// stores the definitions and ingests synthetic patients. cleanup closes the
// store and removes the directory.
func tempApp(ctx context.Context, cfg Config, log *slog.Logger, patients int, seed int64) (a *app, raw []json.RawMessage, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "ketabridge-")
	if err != nil {
		return nil, nil, nil, err
	}
	cfg.DataDir = dir
	a, err = openApp(ctx, cfg, log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	cleanup = func() {
		a.Close()
		os.RemoveAll(dir)
	}
	if err := a.storeDefinitions(ctx); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	if raw, err = synthRecords(patients, seed, demoStart); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return a, raw, cleanup, nil
}

// cmdConformance is the hidden `conformance export` subcommand: it maps
// synthetic patients and writes every resource as NDJSON, plus a few API
// responses (read, searchset Bundles, $everything, metadata) captured from an
// in-process server, for the independent validator.
func cmdConformance(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "export" {
		return &usageError{msg: "conformance: usage: conformance export --patients N --out DIR"}
	}
	cf := newFlagSet("conformance export")
	patients := cf.fs.Int("patients", 50, "number of synthetic patients")
	seed := cf.fs.Int64("seed", 1, "random seed")
	out := cf.fs.String("out", "", "output directory (created)")
	cfg, err := cf.parse(args[1:], e.getenv)
	if err != nil {
		return err
	}
	if *out == "" {
		return &usageError{msg: "conformance export: --out DIR is required"}
	}
	if *patients < 1 {
		return &usageError{msg: "invalid --patients: must be at least 1"}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	log := newLogger(e.stderr, cfg.LogLevel)
	a, raw, cleanup, err := tempApp(ctx, cfg, log, *patients, *seed)
	if err != nil {
		return err
	}
	defer cleanup()

	// 1. Ingest, then export every stored resource exactly as the gateway
	// serves it (stamped with versionId and lastUpdated), type by type.
	_, sum, err := a.ingest.Ingest(ctx, raw)
	if err != nil {
		return err
	}
	if sum.Rejected > 0 {
		return fmt.Errorf("%d synthetic records were rejected on ingest", sum.Rejected)
	}
	n, pids, err := exportStored(ctx, a.store, filepath.Join(*out, "resources.ndjson"))
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("no Patient was stored")
	}

	// 2. API responses from an in-process server over the ingested data:
	// every interaction and Bundle shape the API produces, and its errors.
	ec, err := a.newEcho(log)
	if err != nil {
		return err
	}
	srv := httptest.NewServer(ec)
	defer srv.Close()
	tok, err := a.toolToken(ctx, srv.Client(), srv.URL, "system/*.rs")
	if err != nil {
		return err
	}
	captures := apiCaptures(pids)
	for _, c := range captures {
		h := append([]string{"Authorization", "Bearer " + tok}, c.header...)
		body, status, err := httpGet(ctx, srv.Client(), srv.URL+c.path, h...)
		if err != nil {
			return fmt.Errorf("GET %s: %w", c.name, err)
		}
		if status != c.status {
			return fmt.Errorf("GET %s: status %d, want %d", c.name, status, c.status)
		}
		if err := os.WriteFile(filepath.Join(*out, "api-"+c.name+".json"), body, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "conformance export: %d resources in %s/resources.ndjson, %d API responses (api-*.json)\n",
		n, *out, len(captures))
	return nil
}

// exportStored writes every current resource of every searchable type, as
// stored, to path as NDJSON and returns the count and the Patient ids.
func exportStored(ctx context.Context, st store.Store, path string) (int, []string, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, nil, &exitError{code: 1, msg: err.Error()}
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	n := 0
	var patients []string
	for _, typ := range search.Types() {
		for off := 0; ; off += search.MaxCount {
			res, err := st.Search(ctx, store.Query{Type: typ, Count: search.MaxCount, Offset: off})
			if err != nil {
				return n, nil, fmt.Errorf("export %s: %w", typ, err)
			}
			for _, r := range res.Resources {
				if typ == "Patient" {
					patients = append(patients, r.ID)
				}
				w.Write(r.Body)
				w.WriteByte('\n')
				n++
			}
			if !res.More {
				break
			}
		}
	}
	if err := w.Flush(); err != nil {
		return n, nil, err
	}
	return n, patients, f.Close()
}

// capture is one API request the export records.
type capture struct {
	name, path string
	header     []string // name, value pairs
	status     int
}

// apiCaptures lists the API requests whose responses the export records:
// a search page of every type, the search features, $everything for up to
// three patients, history and vread, and OperationOutcomes for errors.
func apiCaptures(patients []string) []capture {
	pid := url.PathEscape(patients[0])
	cs := []capture{
		{name: "metadata", path: "/fhir/metadata", status: 200},
		{name: "read-patient", path: "/fhir/Patient/" + pid, status: 200},
		{name: "history-patient", path: "/fhir/Patient/" + pid + "/_history", status: 200},
		{name: "vread-patient", path: "/fhir/Patient/" + pid + "/_history/1", status: 200},
		{name: "search-observation-code-date", path: "/fhir/Observation?patient=" + pid +
			"&code=http://loinc.org|85354-9&date=ge2020-01-01&date=le2030-12-31&_count=50&_sort=-date", status: 200},
		{name: "search-observation-survey", path: "/fhir/Observation?patient=" + pid + "&category=survey&_total=accurate", status: 200},
		{name: "search-observation-category-code", path: "/fhir/Observation?category=survey&code=http://loinc.org|44261-6&_count=5", status: 200},
		{name: "search-encounter-status-date", path: "/fhir/Encounter?status=finished&date=ge2020-01-01&_sort=date&_count=5", status: 200},
		{name: "search-medadmin-include", path: "/fhir/MedicationAdministration?patient=" + pid +
			"&_include=MedicationAdministration:medication&_include=MedicationAdministration:request&_include=MedicationAdministration:context", status: 200},
		{name: "search-encounter-revinclude", path: "/fhir/Encounter?patient=" + pid + "&_revinclude=Provenance:target&_count=5", status: 200},
		{name: "search-condition-include", path: "/fhir/Condition?patient=" + pid + "&_include=Condition:subject", status: 200},
		{name: "search-elements", path: "/fhir/Patient?_elements=name,birthDate&_count=5", status: 200},
		{name: "search-summary-count", path: "/fhir/Observation?patient=" + pid + "&_summary=count", status: 200},
		{name: "search-lenient", path: "/fhir/Patient?_count=2&unknown-param=1", header: []string{"Prefer", "handling=lenient"}, status: 200},
		{name: "search-page-2", path: "/fhir/Observation?patient=" + pid + "&_count=10&_offset=10", status: 200},
		{name: "error-unknown-param", path: "/fhir/Patient?unknown-param=1", status: 400},
		{name: "error-not-found", path: "/fhir/Patient/does-not-exist", status: 404},
		{name: "error-unknown-type", path: "/fhir/NoSuchType", status: 404},
		{name: "error-xml", path: "/fhir/Patient/" + pid, header: []string{"Accept", "application/fhir+xml"}, status: 406},
		{name: "error-no-token", path: "/fhir/Patient/" + pid, header: []string{"Authorization", ""}, status: 401},
		{name: "error-bad-token", path: "/fhir/Patient/" + pid, header: []string{"Authorization", "Bearer not-a-token"}, status: 401},
	}
	for _, typ := range search.Types() {
		cs = append(cs, capture{name: "search-type-" + strings.ToLower(typ), path: "/fhir/" + typ + "?_count=100", status: 200})
	}
	for i, p := range patients {
		if i == 3 {
			break
		}
		cs = append(cs, capture{name: fmt.Sprintf("everything-%d", i), path: "/fhir/Patient/" + url.PathEscape(p) + "/$everything?_count=500", status: 200})
	}
	return cs
}

// httpGet fetches url and returns the body and status.
func httpGet(ctx context.Context, c *http.Client, u string, header ...string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i]) // a later pair may remove an earlier one
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}
