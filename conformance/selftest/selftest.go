// Package selftest drives a running KetaBridge gateway over plain HTTP, as
// any client would (a bearer token obtained at its token endpoint, real
// requests), and writes what it answers for external validation: every
// resource it serves, one response of every interaction and Bundle shape
// (errors included), and the published implementation guide
// (conformance.Definitions) that a validator takes with --defs.
package selftest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ketabridge/ketabridge/conformance"
	"github.com/ketabridge/ketabridge/fhir/bulkclient"
	"github.com/ketabridge/ketabridge/fhir/search"
)

// Options say which gateway to drive and where the output goes.
type Options struct {
	// Base is the gateway's base URL (the FHIR base is Base + "/fhir").
	Base string
	// Token returns a bearer token that may read everything (system/*.rs).
	// It is asked before every request, so a source that renews its token
	// keeps a long export going past the token's lifetime.
	Token TokenSource
	// Client sends the requests (nil: http.DefaultClient).
	Client *http.Client
	// Outside are tokens of clients bound to an outside organization (a
	// payer or a partner, docs/access.md): the answers of their views are
	// captured too (api-{name}-{capture}.json), reduced Patients included.
	Outside []OutsideToken
	// Out is the output directory: resources.ndjson, api-{name}.json,
	// bulk-export.ndjson (a Bulk Data export's lines),
	// ig/{resourceType}-{id}.json and ig/vendor/{resourceType}-{id}.json are
	// written there.
	Out string
}

// OutsideToken is the token source of a payer or partner client, and the
// name its captures are filed under.
type OutsideToken struct {
	Name  string
	Token TokenSource
}

// TokenSource returns a current bearer token.
type TokenSource func(context.Context) (string, error)

// Static is a TokenSource of one fixed token.
func Static(tok string) TokenSource {
	return func(context.Context) (string, error) { return tok, nil }
}

// Result counts what Export wrote.
type Result struct {
	Resources, Responses, Definitions, Vendored, Exported int
}

// Export writes every resource the gateway serves (each searchable type,
// paged through with the links the gateway gives), the API responses of
// Captures for the first patients served, the implementation guide
// (conformance.Definitions) and, in ig/vendor, the other publishers'
// definitions the gateway emits (conformance.Vendored): a validator given
// the ig directory knows every extension the gateway may emit.
func Export(ctx context.Context, o Options) (Result, error) {
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	var res Result
	if err := os.MkdirAll(filepath.Join(o.Out, "ig", "vendor"), 0o755); err != nil {
		return res, err
	}
	n, ids, err := o.exportResources(ctx, filepath.Join(o.Out, "resources.ndjson"))
	if err != nil {
		return res, err
	}
	patients := ids["Patient"]
	res.Resources = n
	if len(patients) == 0 {
		return res, fmt.Errorf("selftest: the gateway serves no Patient")
	}
	if res.Exported, err = o.bulkExport(ctx, filepath.Join(o.Out, "bulk-export.ndjson")); err != nil {
		return res, err
	}
	for _, c := range append(Captures(patients), PriorAuthCaptures(ids["CarePlan"])...) {
		body, status, err := o.get(ctx, o.Base+c.Path, c.Header...)
		if err != nil {
			return res, fmt.Errorf("selftest: GET %s: %w", c.Name, err)
		}
		if status != c.Status && status != c.OrStatus {
			return res, fmt.Errorf("selftest: GET %s: status %d, want %d", c.Name, status, c.Status)
		}
		if err := os.WriteFile(filepath.Join(o.Out, "api-"+c.Name+".json"), body, 0o644); err != nil {
			return res, err
		}
		res.Responses++
	}
	for _, ot := range o.Outside {
		n, err := o.exportOutside(ctx, ot)
		res.Responses += n
		if err != nil {
			return res, err
		}
	}
	if res.Definitions, err = writeDefinitions(filepath.Join(o.Out, "ig"), conformance.Definitions); err != nil {
		return res, err
	}
	res.Vendored, err = writeDefinitions(filepath.Join(o.Out, "ig", "vendor"), conformance.Vendored)
	return res, err
}

// writeDefinitions writes the definitions list returns to dir, one
// {resourceType}-{id}.json each.
func writeDefinitions(dir string, list func() ([]conformance.Definition, error)) (int, error) {
	defs, err := list()
	if err != nil {
		return 0, err
	}
	for _, d := range defs {
		if err := os.WriteFile(filepath.Join(dir, d.Type+"-"+d.ID+".json"), d.Body, 0o644); err != nil {
			return 0, err
		}
	}
	return len(defs), nil
}

// page is the part of a searchset Bundle the export reads.
type page struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
	Link []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
}

// exportResources searches every type, following the next links, and
// writes each match as one NDJSON line; it returns the count and the
// Patient and CarePlan ids in the order served.
func (o Options) exportResources(ctx context.Context, path string) (int, map[string][]string, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	n := 0
	ids := map[string][]string{}
	for _, typ := range search.Types() {
		next := fmt.Sprintf("%s/fhir/%s?_count=%d", o.Base, typ, search.MaxCount)
		for next != "" {
			var p page
			if err := o.getJSON(ctx, next, &p); err != nil {
				return n, nil, fmt.Errorf("selftest: search %s: %w", typ, err)
			}
			next = ""
			for _, l := range p.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			for _, e := range p.Entry {
				if e.Search.Mode != "match" {
					continue
				}
				if typ == "Patient" || typ == "CarePlan" {
					var head struct {
						ID string `json:"id"`
					}
					if err := json.Unmarshal(e.Resource, &head); err != nil {
						return n, nil, err
					}
					ids[typ] = append(ids[typ], head.ID)
				}
				var line bytes.Buffer
				if err := json.Compact(&line, e.Resource); err != nil {
					return n, nil, err
				}
				line.WriteByte('\n')
				if _, err := w.Write(line.Bytes()); err != nil {
					return n, nil, err
				}
				n++
			}
		}
	}
	if err := w.Flush(); err != nil {
		return n, nil, err
	}
	return n, ids, f.Close()
}

// getJSON fetches u (200 expected) and decodes it into v.
func (o Options) getJSON(ctx context.Context, u string, v any) error {
	body, status, err := o.get(ctx, u)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return json.Unmarshal(body, v)
}

// get fetches u with the bearer token and Accept: application/fhir+json;
// header holds name, value pairs applied after those (an empty value
// removes the header).
func (o Options) get(ctx context.Context, u string, header ...string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	tok, err := o.Token(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// Capture is one API request whose response the export records.
type Capture struct {
	// Name names the file: api-{Name}.json.
	Name, Path string
	// Header holds name, value pairs (an empty value removes the header).
	Header []string
	// Status is the status the gateway must answer; OrStatus, when not 0,
	// is another status accepted.
	Status, OrStatus int
}

// Captures lists the API requests whose responses the export records: a
// search page of every type, the search features, $everything for up to
// three patients, history and vread, and OperationOutcomes for errors. It
// needs at least one patient (none: nil).
func Captures(patients []string) []Capture {
	if len(patients) == 0 {
		return nil
	}
	pid := url.PathEscape(patients[0])
	cs := []Capture{
		{Name: "metadata", Path: "/fhir/metadata", Status: 200},
		{Name: "read-patient", Path: "/fhir/Patient/" + pid, Status: 200},
		{Name: "history-patient", Path: "/fhir/Patient/" + pid + "/_history", Status: 200},
		{Name: "vread-patient", Path: "/fhir/Patient/" + pid + "/_history/1", Status: 200},
		{Name: "search-observation-code-date", Path: "/fhir/Observation?patient=" + pid +
			"&code=http://loinc.org|85354-9&date=ge2020-01-01&date=le2030-12-31&_count=50&_sort=-date", Status: 200},
		{Name: "search-observation-survey", Path: "/fhir/Observation?patient=" + pid + "&category=survey&_total=accurate", Status: 200},
		{Name: "search-observation-category-code", Path: "/fhir/Observation?category=survey&code=http://loinc.org|44261-6&_count=5", Status: 200},
		{Name: "search-encounter-status-date", Path: "/fhir/Encounter?status=finished&date=ge2020-01-01&_sort=date&_count=5", Status: 200},
		{Name: "search-medadmin-include", Path: "/fhir/MedicationAdministration?patient=" + pid +
			"&_include=MedicationAdministration:medication&_include=MedicationAdministration:request&_include=MedicationAdministration:context", Status: 200},
		{Name: "search-encounter-revinclude", Path: "/fhir/Encounter?patient=" + pid + "&_revinclude=Provenance:target&_count=5", Status: 200},
		{Name: "search-condition-include", Path: "/fhir/Condition?patient=" + pid + "&_include=Condition:subject", Status: 200},
		{Name: "search-elements", Path: "/fhir/Patient?_elements=name,birthDate&_count=5", Status: 200},
		{Name: "search-summary-count", Path: "/fhir/Observation?patient=" + pid + "&_summary=count", Status: 200},
		{Name: "search-lenient", Path: "/fhir/Patient?_count=2&unknown-param=1", Header: []string{"Prefer", "handling=lenient"}, Status: 200},
		{Name: "search-page-2", Path: "/fhir/Observation?patient=" + pid + "&_count=10&_offset=10", Status: 200},
		{Name: "error-unknown-param", Path: "/fhir/Patient?unknown-param=1", Status: 400},
		{Name: "error-not-found", Path: "/fhir/Patient/does-not-exist", Status: 404},
		{Name: "error-unknown-type", Path: "/fhir/NoSuchType", Status: 404},
		{Name: "error-xml", Path: "/fhir/Patient/" + pid, Header: []string{"Accept", "application/fhir+xml"}, Status: 406},
		{Name: "error-no-token", Path: "/fhir/Patient/" + pid, Header: []string{"Authorization", ""}, Status: 401},
		{Name: "error-bad-token", Path: "/fhir/Patient/" + pid, Header: []string{"Authorization", "Bearer not-a-token"}, Status: 401},
	}
	for _, typ := range search.Types() {
		cs = append(cs, Capture{Name: "search-type-" + strings.ToLower(typ), Path: "/fhir/" + typ + "?_count=100", Status: 200})
	}
	for i, p := range patients {
		if i == 3 {
			break
		}
		cs = append(cs, Capture{Name: fmt.Sprintf("everything-%d", i), Path: "/fhir/Patient/" + url.PathEscape(p) + "/$everything?_count=500", Status: 200})
	}
	// The derived cohorts Group-level Bulk Data export offers.
	cs = append(cs, Capture{Name: "search-type-group", Path: "/fhir/Group", Status: 200})
	return cs
}

// exportOutside records the answers an outside organization's view gives:
// its Patients (full or reduced), its assessments, a read and the
// $everything of the first patient it sees. Each must answer 200.
func (o Options) exportOutside(ctx context.Context, ot OutsideToken) (int, error) {
	v := o
	v.Token = ot.Token
	var p page
	if err := v.getJSON(ctx, o.Base+"/fhir/Patient?_count=20", &p); err != nil {
		return 0, fmt.Errorf("selftest: %s patients: %w", ot.Name, err)
	}
	var pid string
	for _, e := range p.Entry {
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(e.Resource, &head) == nil && head.ID != "" {
			pid = url.PathEscape(head.ID)
			break
		}
	}
	if pid == "" {
		return 0, fmt.Errorf("selftest: %s sees no patient", ot.Name)
	}
	captures := []Capture{
		{Name: "search-patient", Path: "/fhir/Patient?_count=20"},
		{Name: "read-patient", Path: "/fhir/Patient/" + pid},
		{Name: "search-observation-survey", Path: "/fhir/Observation?category=survey&_count=50"},
		{Name: "search-condition-include", Path: "/fhir/Condition?_include=Condition:subject&_count=50"},
		{Name: "everything", Path: "/fhir/Patient/" + pid + "/$everything?_count=500"},
	}
	n := 0
	for _, c := range captures {
		body, status, err := v.get(ctx, o.Base+c.Path)
		if err != nil {
			return n, fmt.Errorf("selftest: %s GET %s: %w", ot.Name, c.Name, err)
		}
		if status != http.StatusOK {
			return n, fmt.Errorf("selftest: %s GET %s: status %d", ot.Name, c.Name, status)
		}
		if err := os.WriteFile(filepath.Join(o.Out, "api-"+ot.Name+"-"+c.Name+".json"), body, 0o644); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// bulkExport runs a Patient-level Bulk Data export and writes the lines of
// every output file to path (each line a resource): what a bulk client
// receives, for validation. It deletes the export afterwards.
func (o Options) bulkExport(ctx context.Context, path string) (int, error) {
	c := &bulkclient.Client{HTTP: o.Client, Token: o.Token}
	status, err := c.Kickoff(ctx, bulkclient.Request{Base: o.Base + "/fhir", Patient: true})
	if err != nil {
		return 0, fmt.Errorf("selftest: bulk export: %w", err)
	}
	m, err := c.Wait(ctx, status)
	if err != nil {
		return 0, fmt.Errorf("selftest: bulk export: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "selftest-bulk")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	n := 0
	for i, out := range m.Output {
		name := bulkclient.FileName(tmp, "output", i, out)
		if _, err := c.Download(ctx, out.URL, name); err != nil {
			return n, fmt.Errorf("selftest: bulk export file: %w", err)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return n, err
		}
		if _, err := f.Write(b); err != nil {
			return n, err
		}
		n += out.Count
	}
	if n == 0 {
		return 0, fmt.Errorf("selftest: the bulk export holds nothing")
	}
	return n, c.Delete(ctx, status)
}

// PriorAuthCaptures lists the prior-authorization answers the export
// records for up to maxPA courses: $pa-criteria (a Parameters, or a 422
// OperationOutcome for a course no policy covers) and $pas-bundle (the Da
// Vinci PAS request Bundle, whose PAS profiles fhir-validate applies, or a
// 422 OperationOutcome naming the data a course lacks) and $pa-status (or a
// 404 OperationOutcome for a course without a payer answer).
func PriorAuthCaptures(carePlans []string) []Capture {
	const maxPA = 12
	var cs []Capture
	for i, id := range carePlans {
		if i == maxPA {
			break
		}
		p := "/fhir/CarePlan/" + url.PathEscape(id)
		cs = append(cs,
			Capture{Name: fmt.Sprintf("pa-criteria-%d", i), Path: p + "/$pa-criteria", Status: 200, OrStatus: 422},
			Capture{Name: fmt.Sprintf("pas-bundle-%d", i), Path: p + "/$pas-bundle", Status: 200, OrStatus: 422},
			Capture{Name: fmt.Sprintf("pa-status-%d", i), Path: p + "/$pa-status", Status: 200, OrStatus: 404})
	}
	return cs
}
