package synth

import (
	"bufio"
	"bytes"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

type resolver map[clinic.Key]clinic.Record

func (m resolver) Resolve(k clinic.Key) (clinic.Record, bool) {
	r, ok := m[k]
	return r, ok
}

// decodeAll generates, then decodes every line, validates it and checks its
// references against the records before it (so the output is in dependency
// order), failing on any error.
func decodeAll(t *testing.T, opts Options) ([]clinic.Record, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Generate(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	res := resolver{}
	var recs []clinic.Record
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		r, errs := clinic.Decode(sc.Bytes())
		if len(errs) > 0 {
			t.Fatalf("line %d: decode: %v", line, errs)
		}
		k := clinic.Key{Kind: r.RecordKind(), ID: r.RecordID()}
		if errs := clinic.Validate(r); len(errs) > 0 {
			t.Fatalf("line %d %s: validate: %v", line, k, errs)
		}
		if errs := clinic.CheckRefs(r, res); len(errs) > 0 {
			t.Fatalf("line %d %s: refs: %v", line, k, errs)
		}
		if _, dup := res[k]; dup {
			t.Fatalf("line %d: duplicate key %s", line, k)
		}
		res[k] = r
		recs = append(recs, r)
	}
	if st.Records != line {
		t.Fatalf("Stats.Records = %d, lines = %d", st.Records, line)
	}
	return recs, st
}

func TestGeneratedRecordsPassAllChecks(t *testing.T) {
	recs, st := decodeAll(t, Options{Patients: 50, Seed: 7})
	byKind := map[clinic.Kind]int{}
	for _, r := range recs {
		byKind[r.RecordKind()]++
	}
	for _, k := range clinic.Kinds {
		if byKind[k] == 0 {
			t.Errorf("no %s records", k)
		}
		if st.ByKind[k] != byKind[k] {
			t.Errorf("Stats.ByKind[%s] = %d, counted %d", k, st.ByKind[k], byKind[k])
		}
	}
	// Patients 9, 21, 33 and 45 (plan 9) are self-pay.
	if byKind[clinic.KindPatient] != 50 || byKind[clinic.KindCourse] != 50 || byKind[clinic.KindCoverage] != 46 ||
		byKind[clinic.KindConsent] < 50 {
		t.Errorf("per-patient counts = %v", byKind)
	}
}

// TestInteroperabilityFields checks the generator fills what the FHIR
// mapping codes: demographics for most (not all) patients, a payer type on
// every coverage, payer identifiers, a product on every protocol, the
// diagnosis of every trial and a causality on every adverse effect.
func TestInteroperabilityFields(t *testing.T) {
	recs, _ := decodeAll(t, Options{Patients: 200, Seed: 3})
	var patients, withDemo, languages, effects int
	for _, r := range recs {
		switch v := r.(type) {
		case *clinic.Patient:
			patients++
			if len(v.Race) > 0 && v.Ethnicity != "" && v.BirthSex != "" {
				withDemo++
			}
			if v.Language != "" && v.Language != "en" {
				languages++
			}
		case *clinic.Organization:
			if v.Type == "payer" && (v.NAIC == "" || v.PayerID == "") {
				t.Errorf("payer %s lacks NAIC or payer id", v.ID)
			}
		case *clinic.Coverage:
			if v.PayerType == "" {
				t.Errorf("coverage %s has no payer type", v.ID)
			}
		case *clinic.Protocol:
			if v.Product == nil {
				t.Errorf("protocol %s has no product", v.ID)
			}
		case *clinic.AntidepressantTrial:
			if v.DiagnosisID == "" {
				t.Errorf("trial %s has no diagnosis", v.ID)
			}
		case *clinic.Session:
			for _, ae := range v.AdverseEffects {
				effects++
				if ae.Causality == "" {
					t.Errorf("session %s: %s without causality", v.ID, ae.Effect)
				}
			}
		}
	}
	if frac := float64(withDemo) / float64(patients); frac < 0.75 || frac > 0.97 {
		t.Errorf("%.2f of patients have demographics, want most but not all", frac)
	}
	if languages == 0 || effects == 0 {
		t.Errorf("%d non-English speakers, %d adverse effects: want some of each", languages, effects)
	}
}

func TestDeterministic(t *testing.T) {
	gen := func(opts Options) []byte {
		var b bytes.Buffer
		if _, err := Generate(&b, opts); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a := gen(Options{Patients: 5, Seed: 1})
	tests := []struct {
		name string
		opts Options
		same bool
	}{
		{"same seed", Options{Patients: 5, Seed: 1}, true},
		{"explicit default start", Options{Patients: 5, Seed: 1, Start: time.Date(2025, 1, 6, 15, 0, 0, 0, time.UTC)}, true},
		{"other seed", Options{Patients: 5, Seed: 2}, false},
		{"other start", Options{Patients: 5, Seed: 1, Start: time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bytes.Equal(gen(tc.opts), a); got != tc.same {
				t.Fatalf("equal = %v, want %v", got, tc.same)
			}
		})
	}
	t.Run("prefix stable when adding patients", func(t *testing.T) {
		if b := gen(Options{Patients: 6, Seed: 1}); !bytes.HasPrefix(b, a) {
			t.Fatal("patient records depend on the patient count")
		}
	})
	t.Run("negative count", func(t *testing.T) {
		if _, err := Generate(io.Discard, Options{Patients: -1}); err == nil {
			t.Fatal("no error")
		}
	})
	// A data set built up in steps (From) is the one generated at once: the
	// steps' outputs, concatenated, are its bytes, the reference records
	// only in the first step's.
	t.Run("steps concatenate to the whole", func(t *testing.T) {
		long := Options{Seed: 1, LongCourse: 40}
		var steps []byte
		for _, r := range [][2]int{{0, 2}, {2, 3}, {3, 3}, {3, 5}} {
			o := long
			o.From, o.Patients = r[0], r[1]
			steps = append(steps, gen(o)...)
		}
		long.Patients = 5
		if whole := gen(long); !bytes.Equal(steps, whole) {
			t.Fatalf("steps give %d bytes, the whole %d, not the same bytes", len(steps), len(whole))
		}
		if !bytes.Contains(gen(Options{Seed: 1, Patients: 1}), []byte(`"kind":"organization"`)) {
			t.Fatal("no reference records in a first step")
		}
		if b := gen(Options{Seed: 1, From: 3, Patients: 5}); bytes.Contains(b, []byte(`"kind":"organization"`)) {
			t.Fatal("a later step repeats the reference records")
		}
	})
	t.Run("first patient out of range", func(t *testing.T) {
		for _, o := range []Options{{From: -1, Patients: 2}, {From: 3, Patients: 2}} {
			if _, err := Generate(io.Discard, o); err == nil {
				t.Fatalf("From %d, Patients %d: no error", o.From, o.Patients)
			}
		}
	})
}

// TestRealism checks the clinical shape of a larger sample.
func TestRealism(t *testing.T) {
	recs, _ := decodeAll(t, Options{Patients: 200, Seed: 42})
	type patientInfo struct {
		sessions, trials int
		classes          []string
		protocol         string
	}
	pats := map[string]*patientInfo{}
	courses := map[string]*clinic.Course{}
	var total, cancelled, stopped, ivDone, ivVitalSets int
	var responders, withPHQ int
	firstPHQ := map[string]int{}
	lastPHQ := map[string]int{}
	start := time.Date(2025, 1, 6, 0, 0, 0, 0, zone)
	for _, r := range recs {
		switch v := r.(type) {
		case *clinic.Patient:
			pats[v.ID] = &patientInfo{}
			birth, _ := time.Parse(time.DateOnly, v.BirthDate)
			if age := start.Sub(birth).Hours() / 24 / 365.25; age < 18 || age > 81 {
				t.Errorf("%s: age %.1f", v.ID, age)
			}
		case *clinic.AntidepressantTrial:
			p := pats[v.PatientID]
			p.trials++
			if slices.Contains(p.classes, v.Class) {
				t.Errorf("%s: two trials of class %s", v.PatientID, v.Class)
			}
			p.classes = append(p.classes, v.Class)
			if v.AdequateTrial && v.End != "" {
				s, _ := time.Parse(time.DateOnly, v.Start)
				e, _ := time.Parse(time.DateOnly, v.End)
				if d := e.Sub(s).Hours() / 24; d < 42 || d > 84 {
					t.Errorf("%s: adequate trial of %.0f days", v.ID, d)
				}
			}
		case *clinic.Course:
			courses[v.ID] = v
			pats[v.PatientID].protocol = v.ProtocolID
		case *clinic.Session:
			p := pats[v.PatientID]
			p.sessions++
			total++
			switch v.Status {
			case clinic.SessionCancelled, clinic.SessionNoShow:
				cancelled++
			case clinic.SessionStoppedEarly:
				stopped++
			}
			if p.protocol == protoIV && v.Status == clinic.SessionCompleted {
				ivDone++
				ivVitalSets += len(v.Vitals)
			}
			if p.protocol == protoSpr && v.Status == clinic.SessionCompleted {
				if v.REMS == nil || len(v.Vitals) < 3 || v.Administrations[0].LotNumber == "" {
					t.Errorf("%s: Spravato session without REMS, 3 BP sets or lot", v.ID)
				}
			}
			for _, a := range v.Assessments {
				if a.Instrument == clinic.InstrumentPHQ9 {
					if _, ok := firstPHQ[v.PatientID]; !ok {
						firstPHQ[v.PatientID] = *a.Total
						withPHQ++
					}
					lastPHQ[v.PatientID] = *a.Total
				}
			}
		}
	}
	for id, p := range pats {
		if p.trials < 2 || p.trials > 4 {
			t.Errorf("%s: %d trials", id, p.trials)
		}
		if p.sessions < 8 || p.sessions > 30 {
			t.Errorf("%s: %d sessions", id, p.sessions)
		}
		if first := firstPHQ[id]; float64(lastPHQ[id]) <= 0.5*float64(first) {
			responders++
		}
	}
	if withPHQ != len(pats) {
		t.Errorf("%d of %d patients have a PHQ-9", withPHQ, len(pats))
	}
	rate := func(n int) float64 { return float64(n) / float64(total) }
	if r := rate(cancelled); r < 0.025 || r > 0.08 {
		t.Errorf("cancelled/no-show rate %.3f, want about 0.05", r)
	}
	if r := rate(stopped); r < 0.005 || r > 0.05 {
		t.Errorf("stopped-early rate %.3f, want about 0.03", r)
	}
	if avg := float64(ivVitalSets) / float64(ivDone); avg < 8 || avg > 12 {
		t.Errorf("IV sessions average %.1f vitals sets, want 8-12", avg)
	}
	if frac := float64(responders) / float64(len(pats)); frac < 0.3 || frac > 0.8 {
		t.Errorf("%.2f of patients respond (PHQ-9 halves), want a mix", frac)
	}
	t.Logf("%d patients, %d sessions (%.1f each), IV vitals sets %.1f, responders %d",
		len(pats), total, float64(total)/float64(len(pats)), float64(ivVitalSets)/float64(ivDone), responders)
}

// BenchmarkGenerate3000 generates 3,000 patients (the "few seconds" budget).
func BenchmarkGenerate3000(b *testing.B) {
	for b.Loop() {
		var cw countWriter
		st, err := Generate(&cw, Options{Patients: 3000, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Records), "records")
		b.ReportMetric(float64(cw)/1e6, "MB")
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// TestLongCourse: Options.LongCourse gives the first patient a responder's
// course of exactly that many sessions, every record still valid, and leaves
// the other patients' records as they are without it.
func TestLongCourse(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		recs, _ := decodeAll(t, Options{Patients: 3, Seed: seed, LongCourse: 40})
		base, _ := decodeAll(t, Options{Patients: 3, Seed: seed})
		sessions := map[string]int{}
		var course *clinic.Course
		for _, r := range recs {
			switch r := r.(type) {
			case *clinic.Session:
				sessions[r.PatientID]++
			case *clinic.Course:
				if r.PatientID == "pat-000001" {
					course = r
				}
			}
		}
		if got := sessions["pat-000001"]; got != 40 {
			t.Errorf("seed %d: the first patient has %d sessions, want 40", seed, got)
		}
		if course == nil || course.Status == "stopped" {
			t.Errorf("seed %d: the long course is not a responder's: %+v", seed, course)
		}
		other := func(rs []clinic.Record) []clinic.Record {
			return slices.DeleteFunc(slices.Clone(rs), func(r clinic.Record) bool {
				return bytes.Contains([]byte(r.RecordID()), []byte("000001"))
			})
		}
		a, b := other(recs), other(base)
		if len(a) != len(b) {
			t.Fatalf("seed %d: the other patients have %d records, %d without the long course", seed, len(a), len(b))
		}
		for i := range a {
			if !reflect.DeepEqual(a[i], b[i]) {
				t.Fatalf("seed %d: record %s differs from the one without the long course", seed, a[i].RecordID())
			}
		}
	}
	if _, err := Generate(io.Discard, Options{Patients: 1, LongCourse: -1}); err == nil {
		t.Error("a negative long course: no error")
	}
}
