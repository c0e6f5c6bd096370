package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// testSIDBase is the identifier-system base of the golden cases.
const testSIDBase = "https://brightmind.example/fhir/sid"

// recordedAt is the fixed gateway receipt time of every golden case.
var recordedAt = time.Date(2025, 2, 1, 12, 0, 0, 0, time.UTC)

func testMapper() *Mapper {
	return New(Options{IdentifierSystemBase: testSIDBase, Organization: "ORG-1"})
}

// fixture resolves the records of every golden input by key: the small
// clinic the cases form (a course's protocol, a session's course).
type fixture map[clinic.Key]clinic.Record

func (f fixture) Resolve(k clinic.Key) (clinic.Record, bool) {
	r, ok := f[k]
	return r, ok
}

func loadFixture(t testing.TB) fixture {
	t.Helper()
	f := fixture{}
	for _, file := range cases(t) {
		rec := loadRecord(t, file)
		f[clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}] = rec
	}
	return f
}

// mapCase maps one golden input with the fixture as related records.
func mapCase(t testing.TB, m *Mapper, f fixture, file string) []Output {
	t.Helper()
	outs, err := m.MapWith(loadRecord(t, file), recordedAt, f)
	if err != nil {
		t.Fatalf("MapWith: %v", err)
	}
	return outs
}

// loadRecord decodes and validates one clinic record file.
func loadRecord(t testing.TB, path string) clinic.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, ferrs := clinic.Decode(data)
	if len(ferrs) > 0 {
		t.Fatalf("decode %s: %v", path, ferrs)
	}
	if ferrs := clinic.Validate(rec); len(ferrs) > 0 {
		t.Fatalf("validate %s: %v", path, ferrs)
	}
	return rec
}

// render is the golden form: an indented JSON array of the bodies.
func render(t testing.TB, outs []Output) []byte {
	t.Helper()
	var raw bytes.Buffer
	raw.WriteByte('[')
	for i, o := range outs {
		if i > 0 {
			raw.WriteByte(',')
		}
		raw.Write(o.Body)
	}
	raw.WriteByte(']')
	var out bytes.Buffer
	if err := json.Indent(&out, raw.Bytes(), "", "  "); err != nil {
		t.Fatalf("indent: %v", err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func cases(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.input.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	slices.Sort(files)
	return files
}

func caseName(file string) string { return strings.TrimSuffix(filepath.Base(file), ".input.json") }

func compareGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./mapping -update)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the mapped output (run go test ./mapping -update and review the diff)\n%s",
			golden, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + wl + "\n  got: " + gl
		}
	}
	return ""
}

func TestGolden(t *testing.T) {
	m := testMapper()
	f := loadFixture(t)
	for _, file := range cases(t) {
		t.Run(caseName(file), func(t *testing.T) {
			compareGolden(t, strings.TrimSuffix(file, ".input.json")+".golden.json", render(t, mapCase(t, m, f, file)))
		})
	}
}

// igDir is the published implementation guide: one file per definition.
const igDir = "../conformance/ig"

// TestIGFiles checks that the files of the published implementation guide
// are exactly what Definitions generates (go test ./mapping -update rewrites
// them and removes files of definitions that no longer exist).
func TestIGFiles(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatalf("Definitions: %v", err)
	}
	want := map[string]bool{}
	for _, d := range defs {
		name := d.Type + "-" + d.ID + ".json"
		want[name] = true
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := json.Indent(&out, d.Body, "", "  "); err != nil {
				t.Fatal(err)
			}
			out.WriteByte('\n')
			compareGolden(t, filepath.Join(igDir, name), out.Bytes())
		})
	}
	files, err := filepath.Glob(filepath.Join(igDir, "*-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if want[filepath.Base(file)] {
			continue
		}
		if *update {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s is not a definition Definitions generates (run go test ./mapping -update)", file)
	}
}

// compartmentFree are the types whose Output.Patient is always empty.
var compartmentFree = map[string]bool{
	"Practitioner": true, "Organization": true, "Location": true, "PlanDefinition": true, "CodeSystem": true,
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestOutputInvariants checks what every mapped record must satisfy: body
// shape, ids, order, compartments, the shape of the security labels and the
// Provenance.
func TestOutputInvariants(t *testing.T) {
	m := testMapper()
	for _, file := range cases(t) {
		t.Run(caseName(file), func(t *testing.T) {
			rec := loadRecord(t, file)
			outs, err := m.Map(rec, recordedAt)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			key := clinic.Key{Kind: rec.RecordKind(), ID: rec.RecordID()}
			if got, want := outs[0].ID, ResourceID(key.Kind, key.ID); got != want {
				t.Errorf("first output id = %s, want the record's main resource %s", got, want)
			}
			last := outs[len(outs)-1]
			if last.Type != "Provenance" || last.ID != ProvenanceID(key) {
				t.Errorf("last output = %s/%s, want Provenance/%s", last.Type, last.ID, ProvenanceID(key))
			}
			seen := map[string]bool{}
			var patient string
			for _, o := range outs {
				if !uuidRE.MatchString(o.ID) {
					t.Errorf("%s id %q is not a UUIDv5", o.Type, o.ID)
				}
				if seen[o.Type+"/"+o.ID] {
					t.Errorf("duplicate %s/%s", o.Type, o.ID)
				}
				seen[o.Type+"/"+o.ID] = true
				if prefix := `{"id":"` + o.ID + `","meta":{`; !bytes.HasPrefix(o.Body, []byte(prefix)) {
					t.Errorf("%s body does not start with %s", o.Type, prefix)
				}
				var doc struct {
					ResourceType string `json:"resourceType"`
					Meta         struct {
						Security []struct{ System, Code string }
					}
				}
				if err := json.Unmarshal(o.Body, &doc); err != nil {
					t.Fatalf("%s body: %v", o.Type, err)
				}
				if doc.ResourceType != o.Type {
					t.Errorf("Output.Type %s, body resourceType %s", o.Type, doc.ResourceType)
				}
				// A sensitivity category comes with exactly one
				// confidentiality code (TestSecurityLabels checks which).
				var labels []string
				for _, s := range doc.Meta.Security {
					labels = append(labels, s.System+"|"+s.Code)
				}
				psy := codes.SecurityPSY.System + "|" + codes.SecurityPSY.Code
				if len(labels) > 0 && !slices.Equal(labels, []string{psy, codes.V3Confidentiality + "|N"}) &&
					!slices.Equal(labels, []string{psy, codes.V3Confidentiality + "|R"}) {
					t.Errorf("%s/%s security labels %v, want none, PSY+N or PSY+R", o.Type, o.ID, labels)
				}
				if compartmentFree[o.Type] && o.Patient != "" {
					t.Errorf("%s has compartment %s, want none", o.Type, o.Patient)
				}
				if !compartmentFree[o.Type] && o.Type != "Medication" && o.Type != "Provenance" && o.Patient == "" {
					t.Errorf("%s/%s has no patient compartment", o.Type, o.ID)
				}
				if o.Patient != "" {
					if patient != "" && patient != o.Patient {
						t.Errorf("outputs of one record in two compartments: %s, %s", patient, o.Patient)
					}
					patient = o.Patient
				}
			}
			if patient != "" && last.Patient != patient {
				t.Errorf("Provenance compartment %q, want %q", last.Patient, patient)
			}
			var prov struct {
				Target []struct{ Reference string }
			}
			if err := json.Unmarshal(last.Body, &prov); err != nil {
				t.Fatal(err)
			}
			var targets []string
			for _, r := range prov.Target {
				targets = append(targets, r.Reference)
			}
			var want []string
			for _, o := range outs[:len(outs)-1] {
				want = append(want, o.Type+"/"+o.ID)
			}
			if !slices.Equal(targets, want) {
				t.Errorf("Provenance targets %v, want %v", targets, want)
			}
		})
	}
}

// TestDeterministicAndPure maps every case twice (from a fresh mapper, too)
// and checks identical bytes and an unmodified input record.
func TestDeterministicAndPure(t *testing.T) {
	for _, file := range cases(t) {
		t.Run(caseName(file), func(t *testing.T) {
			rec := loadRecord(t, file)
			before, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			snapshot := reflect.New(reflect.TypeOf(rec).Elem()).Interface()
			if err := json.Unmarshal(before, snapshot); err != nil {
				t.Fatal(err)
			}
			a, err := testMapper().Map(rec, recordedAt)
			if err != nil {
				t.Fatal(err)
			}
			b, err := testMapper().Map(rec, recordedAt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(render(t, a), render(t, b)) {
				t.Error("two mappings of the same record differ")
			}
			if !reflect.DeepEqual(rec, snapshot) {
				t.Error("Map modified its input record")
			}
			// A record passed by value maps the same.
			c, err := testMapper().Map(reflect.ValueOf(rec).Elem().Interface().(clinic.Record), recordedAt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(render(t, a), render(t, c)) {
				t.Error("record by value maps differently from by pointer")
			}
		})
	}
}

func TestResourceID(t *testing.T) {
	tests := []struct {
		name  string
		a, b  string
		equal bool
	}{
		{"same input", ResourceID(clinic.KindPatient, "P-1"), ResourceID(clinic.KindPatient, "P-1"), true},
		{"kind matters", ResourceID(clinic.KindPatient, "X"), ResourceID(clinic.KindSession, "X"), false},
		{"parts matter", ResourceID(clinic.KindSession, "S", "vitals", "1", "bp"), ResourceID(clinic.KindSession, "S", "vitals", "1", "hr"), false},
		{"parts are not the main id", ResourceID(clinic.KindSession, "S"), ResourceID(clinic.KindSession, "S", "weight"), false},
		{"helper", MedicationRequestID("C-1"), ResourceID(clinic.KindCourse, "C-1", "MedicationRequest"), true},
		// Pinned: stored ids depend on the namespace never changing.
		{"pinned", ResourceID(clinic.KindPatient, "P-1"), "ee2ac53d-cf71-53f2-9478-f4b9832d102f", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.a == tc.b) != tc.equal {
				t.Errorf("ids %s and %s: equal = %v, want %v", tc.a, tc.b, tc.a == tc.b, tc.equal)
			}
			if !uuidRE.MatchString(tc.a) {
				t.Errorf("%s is not a UUIDv5", tc.a)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	secret := "Sensitive-Value-42"
	tests := []struct {
		name     string
		rec      clinic.Record
		recorded time.Time
		path     string
	}{
		{"zero recorded time", &clinic.Patient{Header: clinic.Header{Kind: clinic.KindPatient, ID: "P"}, MRN: "1",
			Name: clinic.HumanName{Family: "A"}, Sex: "female", BirthDate: "2000-01-01"}, time.Time{}, ""},
		{"missing id", &clinic.Patient{Header: clinic.Header{Kind: clinic.KindPatient}}, recordedAt, "id"},
		{"bad sex", &clinic.Patient{Header: clinic.Header{Kind: clinic.KindPatient, ID: "P"}, MRN: "1",
			Name: clinic.HumanName{Family: "A"}, Sex: secret, BirthDate: "2000-01-01"}, recordedAt, "sex"},
		{"bad birth date", &clinic.Patient{Header: clinic.Header{Kind: clinic.KindPatient, ID: "P"}, MRN: "1",
			Name: clinic.HumanName{Family: "A"}, Sex: "male", BirthDate: "2000-02-30"}, recordedAt, "birthDate"},
		{"bad vitals time", &clinic.Session{Header: clinic.Header{Kind: clinic.KindSession, ID: "S"},
			PatientID: "P", CourseID: "C", LocationID: "L", ClinicianID: "PR", Status: "completed",
			ScheduledStart: "2025-01-01T09:00:00Z", ActualStart: "2025-01-01T09:00:00Z",
			Vitals: []clinic.Vitals{{Time: secret}}}, recordedAt, "vitals[0].time"},
		{"unknown drug", &clinic.Session{Header: clinic.Header{Kind: clinic.KindSession, ID: "S"},
			PatientID: "P", CourseID: "C", LocationID: "L", ClinicianID: "PR", Status: "completed",
			ScheduledStart: "2025-01-01T09:00:00Z", ActualStart: "2025-01-01T09:00:00Z",
			Administrations: []clinic.Administration{{Drug: secret, DoseMg: 10, Route: "iv", Start: "2025-01-01T09:00:00Z"}}},
			recordedAt, "administrations[0].drug"},
		{"missing dose rule value", &clinic.Protocol{Header: clinic.Header{Kind: clinic.KindProtocol, ID: "PR"},
			Name: "x", Drug: "ketamine", Route: "iv", Dose: clinic.DoseRule{Rule: "mg_per_kg", Mg: f(5)},
			Indications: []string{"F33.2"}}, recordedAt, "dose.mgPerKg"},
		{"completed session without start", &clinic.Session{Header: clinic.Header{Kind: clinic.KindSession, ID: "S"},
			PatientID: "P", CourseID: "C", LocationID: "L", ClinicianID: "PR", Status: "completed",
			ScheduledStart: "2025-01-01T09:00:00Z"}, recordedAt, "actualStart"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outs, err := testMapper().Map(tc.rec, tc.recorded)
			if err == nil {
				t.Fatalf("Map = %d outputs, want an error", len(outs))
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %T %v, want *mapping.Error", err, err)
			}
			if me.Path != tc.path {
				t.Errorf("path = %q, want %q (%v)", me.Path, tc.path, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q leaks a record value", err)
			}
		})
	}
}

func TestDefinitionsCoverEveryLocalCode(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, d := range defs {
		if d.Type != "CodeSystem" {
			continue
		}
		var cs struct {
			URL     string `json:"url"`
			Status  string `json:"status"`
			Content string `json:"content"`
			Concept []struct{ Code string }
		}
		if err := json.Unmarshal(d.Body, &cs); err != nil {
			t.Fatal(err)
		}
		if cs.Status != "active" || cs.Content != "complete" {
			t.Errorf("%s: status %s content %s, want active complete", cs.URL, cs.Status, cs.Content)
		}
		for _, c := range cs.Concept {
			if defined[cs.URL+"|"+c.Code] {
				t.Errorf("%s: duplicate code %s", cs.URL, c.Code)
			}
			defined[cs.URL+"|"+c.Code] = true
		}
	}
	// Every local coding in every golden case must be defined.
	codingRE := regexp.MustCompile(`"system":"(` + regexp.QuoteMeta(codes.CanonicalBase) + `/CodeSystem/[^"]+)","code":"([^"]+)"`)
	m, f := testMapper(), loadFixture(t)
	for _, file := range cases(t) {
		for _, o := range mapCase(t, m, f, file) {
			for _, mt := range codingRE.FindAllSubmatch(o.Body, -1) {
				if !defined[string(mt[1])+"|"+string(mt[2])] {
					t.Errorf("%s: %s/%s uses undefined local code %s|%s", caseName(file), o.Type, o.ID, mt[1], mt[2])
				}
			}
		}
	}
}

// TestResourceIDIsUUIDv5 pins PERF-IN-4's ResourceID to what it computed
// before: uuid.NewSHA1 over the namespace and kind/id(/parts...), for short
// names, names longer than its stack buffer and empty parts.
func TestResourceIDIsUUIDv5(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, c := range []struct {
		kind  clinic.Kind
		id    string
		parts []string
	}{
		{clinic.KindPatient, "P-1", nil},
		{clinic.KindSession, "S-77", []string{"vitals", "3", "bp"}},
		{clinic.KindSession, "S", []string{"", "assessment", "12", "item", "9"}},
		{clinic.KindCourse, long, []string{"MedicationRequest"}},
		{clinic.KindProtocol, "π-ü", []string{long, long}},
	} {
		name := string(c.kind) + "/" + c.id
		for _, p := range c.parts {
			name += "/" + p
		}
		want := uuid.NewSHA1(namespace, []byte(name)).String()
		if got := ResourceID(c.kind, c.id, c.parts...); got != want {
			t.Errorf("ResourceID(%s, %d-byte id, %d parts) = %s, want %s", c.kind, len(c.id), len(c.parts), got, want)
		}
	}
}
