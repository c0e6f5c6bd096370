package main

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

func TestPatientDirectory(t *testing.T) {
	ctx := context.Background()
	cf := newFlagSet("test")
	cfg, err := cf.parse([]string{"--data-dir", t.TempDir()}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.loadDemo(ctx); err != nil {
		t.Fatal(err)
	}
	dir := newPatientDirectory(a.store)

	all, err := dir.FindPatients(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != demoPatients {
		t.Fatalf("FindPatients(\"\") = %d patients, want %d", len(all), demoPatients)
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
	r, err := a.store.Read(ctx, "Patient", all[0].ID)
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
		}, demoPatients},
		{"upper case", strings.ToUpper(fam[:3]), 100, target.ID, nil, demoPatients},
		{"given and family", given + " " + fam, 100, target.ID, func(p auth.PatientSummary) bool {
			n := strings.ToLower(p.Name)
			return strings.Contains(n, given) && strings.Contains(n, fam)
		}, demoPatients},
		{"comma separated words", given + "," + fam, 100, target.ID, nil, demoPatients},
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
		res, err := a.store.Search(ctx, store.Query{Type: "Practitioner", Count: 1})
		if err != nil || len(res.Resources) == 0 {
			t.Skip("no Practitioner in the demo set")
		}
		if got, _ := dir.PatientExists(ctx, res.Resources[0].ID); got {
			t.Errorf("Practitioner id %s reported as a patient", res.Resources[0].ID)
		}
	})
}
