package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/store"
)

// PatientDirectory is the auth.PatientDirectory over the FHIR store: the
// clinician's patient picker and the launch-context check. It searches with
// the same parser and store query as `GET /fhir/Patient?name=...`.
type PatientDirectory struct {
	st Reader
}

var _ auth.PatientDirectory = PatientDirectory{}

// NewPatientDirectory returns the patient directory over st.
func NewPatientDirectory(st Reader) PatientDirectory { return PatientDirectory{st: st} }

// defaultPickerLimit is the page size when FindPatients gets no limit;
// maxPickerWords bounds the words of a query.
const (
	defaultPickerLimit = 20
	maxPickerWords     = 5
)

// FindPatients returns up to limit patients whose name starts with query,
// matched like the FHIR name search parameter (search.html#string: case- and
// accent-insensitive prefix of any name part); a query of several words
// matches patients with a name part starting with each. Results are ordered
// by family then given name then id. An empty query lists every patient.
func (d PatientDirectory) FindPatients(ctx context.Context, query string, limit int) ([]auth.PatientSummary, error) {
	vals := url.Values{"_sort": {"family,given"}, "_total": {"none"}}
	// Each word of the query is a name prefix, all must match (a repeated
	// parameter is AND, search.html#combining); commas, which would be OR,
	// separate words too.
	words := strings.FieldsFunc(query, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(words) > maxPickerWords {
		words = words[:maxPickerWords]
	}
	if len(words) > 0 {
		vals["name"] = words
	}
	req, err := search.Parse("Patient", vals, false)
	if err != nil {
		return nil, fmt.Errorf("patient directory: %w", err)
	}
	if limit <= 0 {
		limit = defaultPickerLimit
	}
	req.Query.Count = min(limit, search.MaxCount)
	req.Query.Total = false
	res, err := d.st.Search(ctx, req.Query)
	if err != nil {
		return nil, fmt.Errorf("patient directory: search: %w", err)
	}
	out := make([]auth.PatientSummary, 0, len(res.Resources))
	for _, r := range res.Resources {
		out = append(out, summarizePatient(r))
	}
	return out, nil
}

// pickerPatientBody is the part of a stored Patient the picker shows.
type pickerPatientBody struct {
	Name []struct {
		Use    string   `json:"use"`
		Text   string   `json:"text"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Prefix []string `json:"prefix"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
}

// summarizePatient reads the display name (the official name, else the first; its
// text, else given names then family) and birth date from a stored body.
func summarizePatient(r store.Resource) auth.PatientSummary {
	s := auth.PatientSummary{ID: r.ID}
	var p pickerPatientBody
	if err := json.Unmarshal(r.Body, &p); err != nil {
		return s
	}
	s.BirthDate = p.BirthDate
	if len(p.Name) == 0 {
		return s
	}
	n := p.Name[0]
	for _, c := range p.Name {
		if c.Use == "official" {
			n = c
			break
		}
	}
	if n.Text != "" {
		s.Name = n.Text
		return s
	}
	parts := append(append([]string{}, n.Given...), n.Family)
	s.Name = strings.TrimSpace(strings.Join(parts, " "))
	return s
}

// PatientExists reports whether the Patient id exists and is not deleted.
func (d PatientDirectory) PatientExists(ctx context.Context, id string) (bool, error) {
	if !validID(id) {
		return false, nil
	}
	_, err := d.st.Read(ctx, "Patient", id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		return false, nil
	default:
		return false, fmt.Errorf("patient directory: read: %w", err)
	}
}
