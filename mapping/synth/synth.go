// Package synth generates realistic synthetic clinic records (NDJSON in the
// shape of mapping/clinic) for demos, tests and benchmarks: a ketamine clinic
// with two payers and two partner clinics, its staff, locations and
// protocols, and patients with diagnoses, coverage (one payer each, a few
// self-pay), antidepressant history, a course, 8-30 sessions (or the first
// patient's long course, Options.LongCourse) and the
// consents that decide which outside organization may see what (consentPlans:
// every data set of 12 patients or more has every kind). Every record passes clinic.Decode, Validate and
// CheckRefs. Names, MRNs and member ids are made up; phone numbers use the
// fictional 555-01xx range and email addresses .example domains.
package synth

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// Options configures Generate.
type Options struct {
	// Patients is the number of patients (0: only the shared reference records).
	Patients int
	// From, when above 0, is the number of the first patient written: the
	// output is patients From to Patients-1 without the shared reference
	// records, exactly the lines a run with From 0 writes for them (a patient's
	// records depend only on Seed, Start and its number). A data set is built
	// up in steps this way (the bench's --scale run) without holding it all.
	From int
	// Seed makes the output deterministic: the same options give the same bytes.
	Seed int64
	// Start is the date of the first session; patients start on it or in the
	// 26 weeks after. Zero means 2025-01-06. Only the date is used.
	Start time.Time
	// LongCourse, when above 0, makes the first patient's course a
	// responder's long maintenance course of exactly that many sessions
	// (the course viewer's size target is measured on a 40-session course,
	// docs/course-viewer.md). 0 draws the count like every other patient's.
	LongCourse int
}

// Stats counts the records Generate wrote.
type Stats struct {
	Records int
	ByKind  map[clinic.Kind]int
}

// zone is the clinic's UTC offset (US Central standard time).
var zone = time.FixedZone("CST", -6*3600)

// Generate writes records as NDJSON in dependency order (organizations,
// practitioners, locations, protocols, then per patient: patient, diagnosis,
// coverage, antidepressant trials, course, sessions, consents). The output is
// deterministic per Options; patient n's records depend only on Seed, Start
// and n, not on the number of patients.
func Generate(w io.Writer, opts Options) (Stats, error) {
	if opts.Patients < 0 {
		return Stats{}, errors.New("synth: negative patient count")
	}
	if opts.From < 0 || opts.From > opts.Patients {
		return Stats{}, errors.New("synth: the first patient must be between 0 and the patient count")
	}
	start := time.Date(2025, 1, 6, 0, 0, 0, 0, zone)
	if !opts.Start.IsZero() {
		y, m, d := opts.Start.Date()
		start = time.Date(y, m, d, 0, 0, 0, 0, zone)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	st := Stats{ByKind: map[clinic.Kind]int{}}
	emit := func(r clinic.Record) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		st.Records++
		st.ByKind[r.RecordKind()]++
		return nil
	}
	if opts.From == 0 {
		for _, r := range referenceRecords() {
			if err := emit(r); err != nil {
				return st, err
			}
		}
	}
	g := &patientGen{}
	if opts.LongCourse < 0 || opts.LongCourse > 200 {
		return Stats{}, errors.New("synth: the long course must have 0 to 200 sessions")
	}
	for n := opts.From; n < opts.Patients; n++ {
		g.reset(opts.Seed, n, start)
		if n == 0 {
			g.long = opts.LongCourse
		}
		if err := g.generate(emit); err != nil {
			return st, err
		}
	}
	return st, bw.Flush()
}

// patientGen generates one patient's records.
type patientGen struct {
	rng   *rand.Rand
	pcg   *rand.PCG
	demo  *rand.Rand // demographics only (see demographics)
	dpcg  *rand.PCG
	n     int
	start time.Time // first session date
	long  int       // this patient's session count when above 0 (Options.LongCourse)

	id            string // number part of the ids, e.g. 000042
	patientID     string
	dxID, covID   string
	dxCode        string // the diagnosis's ICD-10-CM code
	courseID      string
	condition     string // mdd, ptsd, gad
	protocol      string
	prescriber    string
	payer         payer
	weightKg      float64
	baseSys       int
	baseDia       int
	baseHR        int
	baseRR        int
	responder     bool
	improvement   float64 // fraction of baseline the scales fall by (responders)
	phqBaseline   int
	gadBaseline   int
	pclBaseline   int
	madrsBaseline int
	concomitant   []string
	sprMg         float64
}

func (g *patientGen) reset(seed int64, n int, start time.Time) {
	s1 := uint64(seed)
	s2 := uint64(n)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	if g.pcg == nil {
		g.pcg = rand.NewPCG(s1, s2)
		g.rng = rand.New(g.pcg)
		g.dpcg = rand.NewPCG(s1, s2^0xD1B54A32D192ED03)
		g.demo = rand.New(g.dpcg)
	} else {
		g.pcg.Seed(s1, s2)
		g.dpcg.Seed(s1, s2^0xD1B54A32D192ED03)
	}
	g.n = n
	g.start = start.AddDate(0, 0, 7*g.rng.IntN(26))
	g.id = fmt.Sprintf("%06d", n+1)
	g.patientID = "pat-" + g.id
	g.dxID = "dx-" + g.id
	g.covID = "cov-" + g.id
	g.courseID = "course-" + g.id
	g.concomitant = nil
	g.long = 0
}

func (g *patientGen) pick(list []string) string { return list[g.rng.IntN(len(list))] }

// between returns a uniform integer in [lo, hi].
func (g *patientGen) between(lo, hi int) int { return lo + g.rng.IntN(hi-lo+1) }

func (g *patientGen) chance(p float64) bool { return g.rng.Float64() < p }

func dt(t time.Time) string   { return t.Format(time.RFC3339) }
func date(t time.Time) string { return t.Format(time.DateOnly) }
func round1(v float64) float64 {
	return math.Round(v*10) / 10
}
func clamp(v, lo, hi int) int { return max(lo, min(hi, v)) }

func (g *patientGen) generate(emit func(clinic.Record) error) error {
	recs := make([]clinic.Record, 0, 40)
	recs = append(recs, g.patient(), g.diagnosis())
	// The coverage is drawn for every patient, so that the random stream
	// (and the rest of the records) does not depend on who is uncovered.
	if cov := g.coverage(); g.covered() {
		recs = append(recs, cov)
	}
	recs = append(recs, g.trials()...)
	course := g.course()
	sessions := g.sessions(course) // also settles the course's status and end
	recs = append(recs, course)
	for _, r := range recs {
		if err := emit(r); err != nil {
			return err
		}
	}
	for _, s := range sessions {
		if err := emit(s); err != nil {
			return err
		}
	}
	for _, c := range g.consents() {
		if err := emit(c); err != nil {
			return err
		}
	}
	if r := g.priorAuth(course); r != nil {
		if err := emit(r); err != nil {
			return err
		}
	}
	if r := g.referral(); r != nil {
		return emit(r)
	}
	return nil
}

// paOutcomes are the payer answers the synthetic patients get, in turn
// (patient n gets paOutcomes[n % 4]): approved, denied, pended, partial.
var paOutcomes = []string{"approved", "denied", "pended", "partial"}

// priorAuth is the payer's answer to the prior-authorization request of a
// covered patient's course, three days before the first session. It draws
// nothing from the random streams, so the other records do not change.
func (g *patientGen) priorAuth(c *clinic.Course) *clinic.PriorAuthResponse {
	if !g.covered() || c.CoverageID == "" {
		return nil
	}
	requested := 16
	r := &clinic.PriorAuthResponse{
		Header:            clinic.Header{Kind: clinic.KindPriorAuthResponse, ID: "par-" + g.id},
		PatientID:         g.patientID,
		CourseID:          c.ID,
		PayerID:           g.payer.id,
		Outcome:           paOutcomes[g.n%len(paOutcomes)],
		Created:           dt(g.start.AddDate(0, 0, -3).Add(14 * time.Hour)),
		RequestedSessions: &requested,
	}
	switch r.Outcome {
	case "approved", "partial":
		approved, days := requested, 180
		if r.Outcome == "partial" {
			approved, days = 8, 60
		}
		r.ApprovedSessions = &approved
		r.PreAuthRef = fmt.Sprintf("%s-%s", g.payer.payerID, g.id)
		r.Start, r.End = date(g.start), date(g.start.AddDate(0, 0, days-1))
	}
	return r
}

func (g *patientGen) patient() *clinic.Patient {
	var sex, given string
	switch r := g.rng.Float64(); {
	case r < 0.55:
		sex, given = "female", g.pick(givenFemale)
	case r < 0.97:
		sex, given = "male", g.pick(givenMale)
	case r < 0.99:
		sex, given = "other", g.pick(givenNeutral)
	default:
		sex, given = "unknown", g.pick(givenNeutral)
	}
	family := g.pick(families)
	age := g.between(18, 79)
	birth := g.start.AddDate(-age, 0, -g.rng.IntN(365))
	if sex == "male" {
		g.weightKg = round1(62 + g.rng.Float64()*60)
	} else {
		g.weightKg = round1(50 + g.rng.Float64()*55)
	}
	g.baseSys = g.between(108, 136)
	g.baseDia = min(g.between(64, 88), g.baseSys-30)
	g.baseHR = g.between(58, 88)
	g.baseRR = g.between(12, 18)
	c := cities[g.rng.IntN(len(cities))]
	name := clinic.HumanName{Family: family, Given: []string{given}}
	if g.chance(0.3) {
		name.Given = append(name.Given, string(rune('A'+g.rng.IntN(26)))+".")
	}
	p := &clinic.Patient{
		Header:    clinic.Header{Kind: clinic.KindPatient, ID: g.patientID},
		MRN:       fmt.Sprintf("MRN%07d", 1000000+(g.n*7919)%9000000),
		Name:      name,
		BirthDate: date(birth),
		Sex:       sex,
		Contact: &clinic.Contact{
			Phone: fmt.Sprintf("+1-555-01%02d", g.rng.IntN(100)),
			Email: fmt.Sprintf("%s.%s%d@mail.example", lower(given), lower(family), g.n+1),
			Address: &clinic.Address{Lines: []string{fmt.Sprintf("%d %s", g.between(10, 9899), g.pick(streets))},
				City: c.city, State: "IL", PostalCode: c.zip, Country: "US"},
		},
		OrganizationID: orgClinic,
	}
	g.demographics(p)
	return p
}

// demographics gives most patients the USCDI demographics (race, ethnicity,
// birth sex, preferred language) with roughly US proportions, from a random
// stream of their own so the rest of the patient's records do not depend on
// them.
func (g *patientGen) demographics(p *clinic.Patient) {
	r := g.demo
	if r.Float64() < 0.12 {
		return // not recorded
	}
	switch x := r.Float64(); {
	case x < 0.04:
		p.Race = []string{"declined"}
	case x < 0.64:
		p.Race = []string{"white"}
	case x < 0.77:
		p.Race = []string{"black"}
	case x < 0.85:
		p.Race = []string{"asian"}
	case x < 0.86:
		p.Race = []string{"american-indian-alaska-native"}
	case x < 0.87:
		p.Race = []string{"native-hawaiian-pacific-islander"}
	case x < 0.91:
		p.Race = []string{"white", "black"}
	case x < 0.93:
		p.Race = []string{"white", "asian"}
	default:
		p.Race = []string{"unknown"}
	}
	switch x := r.Float64(); {
	case x < 0.19:
		p.Ethnicity = "hispanic-latino"
	case x < 0.95:
		p.Ethnicity = "not-hispanic-latino"
	default:
		p.Ethnicity = "declined"
	}
	switch p.Sex {
	case "female", "male":
		p.BirthSex = p.Sex
	default:
		p.BirthSex = "unknown"
	}
	p.Language = "en"
	switch x := r.Float64(); {
	case p.Ethnicity == "hispanic-latino" && x < 0.35:
		p.Language = "es"
	case x < 0.02:
		p.Language = "zh"
	case x < 0.03:
		p.Language = "vi"
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func (g *patientGen) weighted(codes []dxCode) dxCode {
	r := g.rng.Float64()
	for _, c := range codes {
		if r < c.weight {
			return c
		}
		r -= c.weight
	}
	return codes[len(codes)-1]
}

func (g *patientGen) diagnosis() *clinic.Diagnosis {
	var code dxCode
	switch r := g.rng.Float64(); {
	case r < 0.65:
		g.condition, code = "mdd", g.weighted(mddCodes)
		switch r := g.rng.Float64(); {
		case r < 0.50:
			g.protocol = protoIV
		case r < 0.85:
			g.protocol = protoSpr
		default:
			g.protocol = protoLozenge
		}
	case r < 0.85:
		g.condition, code = "ptsd", g.weighted(ptsdCodes)
		g.protocol = protoIM
		if g.chance(0.35) {
			g.protocol = protoIV
		}
	default:
		g.condition, code = "gad", gadCodes[0]
		g.protocol = protoLozenge
		if g.chance(0.4) {
			g.protocol = protoIV
		}
	}
	if g.protocol == protoLozenge && g.condition == "mdd" && code.code != "F33.1" && code.code != "F32.1" && code.code != "F33.9" {
		code = mddCodes[1] // lozenges are for moderate depression here
	}
	if g.protocol == protoIV && code.code == "F43.11" {
		code = ptsdCodes[0]
	}
	g.prescriber = prescribers[g.rng.IntN(len(prescribers))]
	g.dxCode = code.code
	return &clinic.Diagnosis{
		Header:         clinic.Header{Kind: clinic.KindDiagnosis, ID: g.dxID},
		PatientID:      g.patientID,
		ICD10:          code.code,
		Text:           code.text,
		ClinicalStatus: "active",
		Onset:          date(g.start.AddDate(-g.between(1, 15), -g.rng.IntN(12), 0)),
		RecordedDate:   date(g.start.AddDate(0, 0, -g.between(10, 60))),
		RecorderID:     g.prescriber,
	}
}

func (g *patientGen) coverage() *clinic.Coverage {
	g.payer = payers[g.rng.IntN(len(payers))]
	rel := "self"
	switch r := g.rng.Float64(); {
	case r < 0.10:
		rel = "spouse"
	case r < 0.14:
		rel = "child"
	}
	c := &clinic.Coverage{
		Header:       clinic.Header{Kind: clinic.KindCoverage, ID: g.covID},
		PatientID:    g.patientID,
		PayerID:      g.payer.id,
		MemberID:     fmt.Sprintf("%s%09d", g.payer.memberPrefix, g.rng.IntN(1000000000)),
		Plan:         g.pick(g.payer.plans),
		Group:        fmt.Sprintf("GRP-%05d", g.rng.IntN(100000)),
		Status:       "active",
		Relationship: rel,
		Start:        fmt.Sprintf("%d-01-01", g.start.Year()),
	}
	c.PayerType = planTypes[c.Plan]
	return c
}

// trials writes 2-4 antidepressant trials of different classes, the most
// recent first in time order, ending before the course; for most patients the
// last is ongoing (the concurrent oral antidepressant payers ask for).
func (g *patientGen) trials() []clinic.Record {
	classes := []string{"SSRI", "SNRI", "atypical", "TCA"}
	g.rng.Shuffle(len(classes), func(a, b int) { classes[a], classes[b] = classes[b], classes[a] })
	count := g.between(2, 4)
	if count == 4 && g.chance(0.5) {
		classes[3] = "augmentation"
	}
	ongoing := g.chance(0.7)
	// Walk back from the course start.
	end := g.start.AddDate(0, 0, -g.between(7, 60))
	out := make([]clinic.Record, count)
	for k := count - 1; k >= 0; k-- {
		ad := antidepressants[classes[k]][g.rng.IntN(len(antidepressants[classes[k]]))]
		t := &clinic.AntidepressantTrial{
			Header:    clinic.Header{Kind: clinic.KindAntidepressantTrial, ID: fmt.Sprintf("adt-%s-%d", g.id, k+1)},
			PatientID: g.patientID,
			Drug:      ad.drug,
			RxNorm:    ad.rxnorm,
			Class:     ad.class,
			DoseMgDay: f(ad.doses[g.rng.IntN(len(ad.doses))]),
			// The trials are the treatment-resistance evidence of the
			// diagnosis the course treats.
			DiagnosisID: g.dxID,
		}
		var startT time.Time
		switch r := g.rng.Float64(); {
		case k == count-1 && ongoing:
			startT = g.start.AddDate(0, 0, -g.between(56, 140))
			t.Outcome = "ongoing"
			t.AdequateTrial = true
			t.ImprovementPercent = f(float64(g.between(0, 20)))
			end = startT
		case r < 0.10:
			startT = end.AddDate(0, 0, -g.between(10, 35))
			t.Outcome, t.End = "intolerance", date(end)
		default:
			startT = end.AddDate(0, 0, -g.between(42, 84))
			t.Outcome, t.End, t.AdequateTrial = "inadequate-response", date(end), true
			t.ImprovementPercent = f(float64(g.between(0, 25)))
			if r < 0.2 {
				t.Outcome = "partial-response"
				t.ImprovementPercent = f(float64(g.between(26, 45)))
			}
		}
		t.Start = date(startT)
		out[k] = t
		end = startT.AddDate(0, 0, -g.between(7, 56))
	}
	return out
}

func (g *patientGen) course() *clinic.Course {
	switch g.protocol {
	case protoIV:
		g.responder = g.chance(0.65)
	case protoSpr:
		g.responder = g.chance(0.55)
	default:
		g.responder = g.chance(0.5)
	}
	if g.long > 0 {
		// A long course is a responder's (drawn as above, so the random
		// stream is the same as without it).
		g.responder = true
	}
	if g.responder {
		g.improvement = 0.5 + g.rng.Float64()*0.4
	} else {
		g.improvement = g.rng.Float64() * 0.3
	}
	switch g.condition {
	case "mdd":
		g.phqBaseline = g.between(15, 25)
		g.gadBaseline = g.between(6, 16)
	case "ptsd":
		g.phqBaseline = g.between(10, 20)
		g.gadBaseline = g.between(8, 17)
		g.pclBaseline = g.between(38, 68)
	default:
		g.phqBaseline = g.between(8, 18)
		g.gadBaseline = g.between(12, 20)
	}
	g.madrsBaseline = 0
	if g.condition == "mdd" && g.chance(0.3) {
		g.madrsBaseline = g.between(26, 42)
	}
	switch r := g.rng.Float64(); {
	case r < 0.25:
		g.concomitant = []string{"benzodiazepine"}
	case r < 0.30:
		g.concomitant = []string{"psychostimulant"}
	}
	g.sprMg = 56
	authored := g.start.AddDate(0, 0, -g.between(3, 14)).Add(time.Duration(g.between(9*60, 16*60)) * time.Minute)
	coverage := g.covID
	if !g.covered() {
		coverage = ""
	}
	return &clinic.Course{
		Header:       clinic.Header{Kind: clinic.KindCourse, ID: g.courseID},
		PatientID:    g.patientID,
		ProtocolID:   g.protocol,
		PrescriberID: g.prescriber,
		DiagnosisID:  g.dxID,
		Start:        date(g.start),
		Status:       "active",
		Phase:        "induction",
		CoverageID:   coverage,
		AuthoredOn:   dt(authored),
	}
}
