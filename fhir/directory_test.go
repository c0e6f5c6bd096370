package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/search"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/ingest"
	"github.com/ketabridge/ketabridge/mapping/synth"
	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// directoryPatients is the size of the synthetic data set the directory is
// searched over.
const directoryPatients = 12

// directoryStore is a SQLite store holding directoryPatients synthetic
// patients, ingested as the gateway ingests: the directory's name search is
// the store's, so it is tested against a real one.
func directoryStore(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ketabridge.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var buf bytes.Buffer
	if _, err := synth.Generate(&buf, synth.Options{Patients: directoryPatients, Seed: 1,
		Start: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	var raw []json.RawMessage
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		raw = append(raw, json.RawMessage(l))
	}
	svc := ingest.New(st, mapping.New(mapping.Options{}), search.Extract, store.SystemClock{})
	if _, sum, err := svc.Ingest(ctx, raw); err != nil || sum.Rejected > 0 {
		t.Fatalf("ingest: %v, %d rejected", err, sum.Rejected)
	}
	return st
}

func TestPatientDirectory(t *testing.T) {
	ctx := context.Background()
	st := directoryStore(t)
	dir := NewPatientDirectory(st)

	all, err := dir.FindPatients(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != directoryPatients {
		t.Fatalf("FindPatients(\"\") = %d patients, want %d", len(all), directoryPatients)
	}
	family := func(p auth.PatientSummary) string {
		f := strings.Fields(p.Name)
		return strings.ToLower(f[len(f)-1])
	}
	for i, p := range all {
		if p.ID == "" || p.Name == "" || len(p.BirthDate) != len("2006-01-02") {
			t.Errorf("summary %d = %+v: want id, name and birth date", i, p)
		}
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return family(all[i]) < family(all[j]) }) {
		t.Errorf("not ordered by family name: %v", all)
	}
	// Cross-check the summary against the stored body.
	r, err := st.Read(ctx, "Patient", all[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.Body), all[0].BirthDate) {
		t.Errorf("birth date %s not in the stored body", all[0].BirthDate)
	}

	target := all[len(all)/2]
	fam, given := family(target), strings.ToLower(strings.Fields(target.Name)[0])
	tests := []struct {
		name   string
		query  string
		limit  int
		want   string // an id that must be among the results
		check  func(p auth.PatientSummary) bool
		maxLen int
	}{
		{"family prefix", fam[:3], 100, target.ID, func(p auth.PatientSummary) bool {
			return strings.Contains(strings.ToLower(p.Name), fam[:3])
		}, directoryPatients},
		{"upper case", strings.ToUpper(fam[:3]), 100, target.ID, nil, directoryPatients},
		{"given and family", given + " " + fam, 100, target.ID, func(p auth.PatientSummary) bool {
			n := strings.ToLower(p.Name)
			return strings.Contains(n, given) && strings.Contains(n, fam)
		}, directoryPatients},
		{"comma separated words", given + "," + fam, 100, target.ID, nil, directoryPatients},
		{"limit", "", 3, "", nil, 3},
		{"no limit is the default page", "", 0, "", nil, defaultPickerLimit},
		{"no match", "zzzzqqq", 10, "", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dir.FindPatients(ctx, tc.query, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > tc.maxLen {
				t.Errorf("%d results, want at most %d", len(got), tc.maxLen)
			}
			if tc.maxLen == 0 && len(got) != 0 {
				t.Errorf("results for a non-matching query: %v", got)
			}
			if tc.name == "limit" && len(got) != 3 {
				t.Errorf("%d results, want 3", len(got))
			}
			found := tc.want == ""
			for _, p := range got {
				found = found || p.ID == tc.want
				if tc.check != nil && !tc.check(p) {
					t.Errorf("result %+v does not match %q", p, tc.query)
				}
			}
			if !found {
				t.Errorf("%s not among %v", tc.want, got)
			}
		})
	}

	t.Run("exists", func(t *testing.T) {
		tests := []struct {
			id   string
			want bool
		}{
			{all[0].ID, true},
			{"no-such-patient", false},
			{"bad/id", false},
			{"", false},
		}
		for _, tc := range tests {
			got, err := dir.PatientExists(ctx, tc.id)
			if err != nil || got != tc.want {
				t.Errorf("PatientExists(%q) = %v, %v; want %v", tc.id, got, err, tc.want)
			}
		}
	})
	t.Run("a non-Patient id is not a patient", func(t *testing.T) {
		res, err := st.Search(ctx, store.Query{Type: "Practitioner", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Resources) == 0 {
			t.Fatal("the synthetic data set has no Practitioner")
		}
		got, err := dir.PatientExists(ctx, res.Resources[0].ID)
		if err != nil || got {
			t.Errorf("PatientExists(Practitioner %s) = %v, %v; want false", res.Resources[0].ID, got, err)
		}
	})
	t.Run("a store error is an error, never an answer", func(t *testing.T) {
		failing := newFakeStore()
		failing.fail = errors.New("database is locked")
		broken := NewPatientDirectory(failing)
		if ok, err := broken.PatientExists(ctx, "p1"); err == nil || ok {
			t.Errorf("PatientExists on a failing store = %v, %v; want an error", ok, err)
		}
		if ps, err := broken.FindPatients(ctx, "doe", 5); err == nil || len(ps) != 0 {
			t.Errorf("FindPatients on a failing store = %v, %v; want an error", ps, err)
		}
	})
}
