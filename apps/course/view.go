package course

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/auth"
)

// Code systems and codes the viewer reads (the gateway's mapping,
// docs/fhir-mapping.md).
const (
	loinc     = "http://loinc.org"
	local     = "http://ketabridge.org/fhir/CodeSystem/ketabridge"
	scales    = "http://ketabridge.org/fhir/CodeSystem/ketabridge-scales"
	extBase   = "http://ketabridge.org/fhir/StructureDefinition/"
	ordinalEx = "http://hl7.org/fhir/StructureDefinition/ordinalValue"

	codePHQ9Item9 = "44260-8"
	codeCSSRS     = "93373-9"
	codeCSSRSRisk = "93374-7"
	codeCADSS     = "cadss-total"
	codeMOAAS     = "moaas-score"
	codeBP        = "85354-9"
	codeSys       = "8480-6"
	codeDia       = "8462-4"
	codeHR        = "8867-4"
	codeSpO2      = "59408-5"
)

// scale is one outcome measure the trend shows.
type scale struct {
	Key, Name, System, Code string
	Max                     float64
	// Bands are the severity bands' lower bounds and names.
	Bands []band
	// Remission is the score below which the patient is in remission.
	Remission float64
}

type band struct {
	From  float64
	Name  string
	Class string
}

var outcomeScales = []scale{
	{Key: "phq9", Name: "PHQ-9", System: loinc, Code: "44261-6", Max: 27, Remission: 5, Bands: []band{
		{0, "minimal", "b0"}, {5, "mild", "b1"}, {10, "moderate", "b2"}, {15, "moderately severe", "b3"}, {20, "severe", "b4"}}},
	{Key: "gad7", Name: "GAD-7", System: loinc, Code: "70274-6", Max: 21, Remission: 5, Bands: []band{
		{0, "minimal", "b0"}, {5, "mild", "b1"}, {10, "moderate", "b2"}, {15, "severe", "b4"}}},
	{Key: "madrs", Name: "MADRS", System: scales, Code: "madrs-total", Max: 60, Remission: 11, Bands: []band{
		{0, "normal", "b0"}, {7, "mild", "b1"}, {20, "moderate", "b2"}, {35, "severe", "b4"}}},
	{Key: "pcl5", Name: "PCL-5", System: loinc, Code: "101698-9", Max: 80, Bands: []band{
		{0, "below threshold", "b0"}, {31, "probable PTSD", "b3"}}},
}

// FHIR shapes, as far as the viewer reads them.
type (
	coding struct {
		System, Code, Display string
		Extension             []extension
	}
	concept struct {
		Coding []coding
		Text   string
	}
	quantity struct {
		Value *float64
		Unit  string
	}
	extension struct {
		URL                  string
		ValueBoolean         *bool
		ValueQuantity        *quantity
		ValueCodeableConcept *concept
		ValueDecimal         *float64
	}
	reference struct{ Reference string }
	period    struct{ Start, End string }

	observation struct {
		ID                   string
		Category             []concept
		Code                 concept
		Encounter            reference
		EffectiveDateTime    string
		ValueInteger         *int
		ValueQuantity        *quantity
		ValueCodeableConcept *concept
		Component            []struct {
			Code          concept
			ValueQuantity *quantity
		}
	}
	encounter struct {
		ID, Status string
		Period     period
	}
	medAdmin struct {
		ID                        string
		MedicationReference       reference
		MedicationCodeableConcept *concept
		Context                   reference
		EffectivePeriod           *period
		EffectiveDateTime         string
		Dosage                    struct {
			Extension []extension
			Text      string
			Route     concept
			Dose      *quantity
		}
	}
	medication struct {
		ID         string
		Code       concept
		Ingredient []struct {
			ItemCodeableConcept *concept
		}
	}
	adverseEvent struct {
		ID        string
		Event     concept
		Encounter reference
		Date      string
		Severity  concept
	}
	carePlan struct {
		ID, Status            string
		InstantiatesCanonical []string
		Category              []concept
		Period                period
	}
	medStatement struct {
		Status                    string
		Extension                 []extension
		StatusReason              []concept
		MedicationCodeableConcept concept
		EffectivePeriod           *period
	}
	patient struct {
		Name []struct {
			Text, Family string
			Given        []string
		}
		BirthDate string
	}
)

func (c concept) has(system, code string) bool {
	for _, cd := range c.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

// label is the concept's text, else its first display.
func (c concept) label() string {
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	return ""
}

func (c concept) code(system string) string {
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}

func findExt(es []extension, id string) *extension {
	for i := range es {
		if es[i].URL == extBase+id {
			return &es[i]
		}
	}
	return nil
}

func refID(r reference, typ string) string {
	id, _ := strings.CutPrefix(r.Reference, typ+"/")
	return id
}

// parseWhen reads a FHIR dateTime (or date).
func parseWhen(s string) (time.Time, bool) {
	for _, l := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// day is the calendar day as recorded (the clinic's local date).
func day(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

// view is what the page shows.
type view struct {
	PatientName string
	BirthDate   string
	Summary     *summary
	SummaryNote string
	Trends      []trend
	TrendNote   string
	Sessions    []sessionRow
	SessionNote string
	Safety      []string
	SafetyNote  string
	Monitoring  *monitoring
}

type summary struct {
	Protocol, Status, Phase, Start string
	Given, Planned, Cancelled      int
	Antidepressants                []trial
	TrialsNote                     string
	// PriorAuth and Referrals are nil when there is none or the user may
	// not see it: the page then shows nothing of them.
	PriorAuth *paStatus
	Referrals []referral
	planID    string
}

type trial struct {
	Drug, Class, Outcome, Adequate, Improvement, Period string
}

type point struct {
	When  time.Time
	Date  string
	Value float64
	// Change is the change from baseline in percent (empty for the
	// baseline itself).
	Change string
}

type trend struct {
	Scale    scale
	Points   []point
	Baseline float64
	Latest   string
	Chart    chart
}

type sessionRow struct {
	N                     int
	EncounterID           string
	Date, Status          string
	Drug, Route           string
	DoseMg, DosePerKg     string
	Duration, Monitoring  string
	CADSS, MOAAS          string
	AdverseEvents         []string
	Selected, HasDoseTime bool
}

type vitalRow struct {
	Minute                 int
	Sys, Dia, HR, SpO2     string
	sys, dia, hr, spo2     float64
	hasSys, hasHR, hasSpO2 bool
	at                     int64 // the measurement time (Unix ns): the row's identity and order
}

type monitoring struct {
	Session   sessionRow
	NotShared bool
	Rows      []vitalRow
	Flags     []string
	Charts    []chart
}

// buildView reads the patient's course with the user's token and builds the
// page. A section the token may not read says so; any other failure fails
// the whole page (fail closed: never a partial answer dressed as complete).
func buildView(ctx context.Context, r *reader, pid, scope, selected string) (*view, error) {
	v := &view{}
	pq := func() url.Values { return url.Values{"patient": {pid}} }
	notShared := "Not shared with you."

	var p patient
	switch err := r.get(ctx, "/Patient/"+url.PathEscape(pid), &p); {
	case errors.Is(err, errNotShared):
		v.PatientName = "Patient"
	case err != nil:
		return nil, err
	default:
		v.PatientName, v.BirthDate = patientName(p), p.BirthDate
	}

	encs, err := decodeAll[encounter](r.search(ctx, "Encounter", pq()))
	sessionsShared := true
	if errors.Is(err, errNotShared) {
		sessionsShared, v.SessionNote = false, notShared
	} else if err != nil {
		return nil, err
	}
	maq := pq()
	maq.Set("_include", "MedicationAdministration:medication")
	maRaw, err := r.search(ctx, "MedicationAdministration", maq)
	if errors.Is(err, errNotShared) {
		maRaw = nil
	} else if err != nil {
		return nil, err
	}
	mas, meds := splitMA(maRaw)
	surveyQ := pq()
	surveyQ.Set("category", "survey")
	surveyRaw, surveysWithheld, err := r.searchMarked(ctx, "Observation", surveyQ)
	surveys, err := decodeAll[observation](surveyRaw, err)
	surveysShared := true
	if errors.Is(err, errNotShared) {
		surveysShared, v.TrendNote, v.SafetyNote = false, notShared, notShared
	} else if err != nil {
		return nil, err
	}
	// AdverseEvent has no patient parameter in R4: subject.
	aes, err := decodeAll[adverseEvent](r.search(ctx, "AdverseEvent", url.Values{"subject": {"Patient/" + pid}}))
	if err != nil && !errors.Is(err, errNotShared) {
		return nil, err
	}

	if sessionsShared {
		v.Sessions = sessionRows(encs, mas, meds, surveys, aes, selected)
		if len(v.Sessions) == 0 {
			v.SessionNote = "No sessions recorded."
		}
	}
	switch {
	case surveysShared && surveysWithheld && len(surveys) == 0:
		// docs/design/security.md VIEW-8: the gateway withheld the
		// assessments (PRIV-17): "not shared", never "none recorded".
		v.TrendNote, v.SafetyNote = notShared, notShared
	case surveysShared:
		v.Trends = trends(surveys, v.Sessions)
		v.Safety = safetyFlags(surveys)
		switch {
		case surveysWithheld:
			// Part withheld (for example the suicide-risk answers a
			// consent does not clear): the trends show what is shared
			// and say so; the safety check cannot be complete, so it
			// gives no all-clear: it shows the flags it found and says
			// the rest is not shared.
			v.TrendNote = "Some outcome measures are not shared with you; the charts show only those that are."
			v.SafetyNote = "Not shared with you in full: the safety check needs answers you may not see."
		case len(v.Trends) == 0:
			v.TrendNote = "No outcome measures recorded."
		}
	}

	plans, err := decodeAll[carePlan](r.search(ctx, "CarePlan", pq()))
	switch {
	case errors.Is(err, errNotShared):
		v.SummaryNote = notShared
	case err != nil:
		return nil, err
	default:
		v.Summary = courseSummary(plans, encs)
		trials, err := decodeAll[medStatement](r.search(ctx, "MedicationStatement", pq()))
		switch {
		case errors.Is(err, errNotShared):
			v.Summary.TrialsNote = notShared
		case err != nil:
			return nil, err
		default:
			v.Summary.Antidepressants = antidepressants(trials)
		}
		if v.Summary.PriorAuth, err = readPAStatus(ctx, r, v.Summary.planID); err != nil {
			return nil, err
		}
		if v.Summary.Referrals, err = readReferrals(ctx, r, pid); err != nil {
			return nil, err
		}
	}

	if selected != "" {
		for _, s := range v.Sessions {
			if s.EncounterID == selected {
				m, err := sessionMonitoring(ctx, r, pid, scope, s, mas)
				if err != nil {
					return nil, err
				}
				v.Monitoring = m
			}
		}
	}
	return v, nil
}

func decodeAll[T any](raw []json.RawMessage, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(raw))
	for _, b := range raw {
		var t T
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("course: decoding a resource: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

func splitMA(raw []json.RawMessage) ([]medAdmin, map[string]medication) {
	var mas []medAdmin
	meds := map[string]medication{}
	for _, b := range raw {
		var h struct{ ResourceType string }
		if json.Unmarshal(b, &h) != nil {
			continue
		}
		switch h.ResourceType {
		case "MedicationAdministration":
			var m medAdmin
			if json.Unmarshal(b, &m) == nil {
				mas = append(mas, m)
			}
		case "Medication":
			var m medication
			if json.Unmarshal(b, &m) == nil {
				meds[m.ID] = m
			}
		}
	}
	return mas, meds
}

// drugName is the active ingredient (ketamine, esketamine), else the
// product.
func drugName(m medication) string {
	if len(m.Ingredient) == 1 && m.Ingredient[0].ItemCodeableConcept != nil {
		if n := m.Ingredient[0].ItemCodeableConcept.label(); n != "" {
			return n
		}
	}
	return m.Code.label()
}

func patientName(p patient) string {
	for _, n := range p.Name {
		if n.Text != "" {
			return n.Text
		}
		parts := append(slices.Clone(n.Given), n.Family)
		if s := strings.TrimSpace(strings.Join(parts, " ")); s != "" {
			return s
		}
	}
	return "Patient"
}

func fmtNum(f float64) string {
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f", f)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}

func obsValue(o observation) (float64, bool) {
	switch {
	case o.ValueInteger != nil:
		return float64(*o.ValueInteger), true
	case o.ValueQuantity != nil && o.ValueQuantity.Value != nil:
		return *o.ValueQuantity.Value, true
	}
	return 0, false
}

// startOf is when a dose began.
func startOf(m medAdmin) string {
	if m.EffectivePeriod != nil {
		return m.EffectivePeriod.Start
	}
	return m.EffectiveDateTime
}

func minutesBetween(a, b string) (int, bool) {
	ta, ok1 := parseWhen(a)
	tb, ok2 := parseWhen(b)
	if !ok1 || !ok2 || tb.Before(ta) {
		return 0, false
	}
	return int(tb.Sub(ta).Round(time.Minute) / time.Minute), true
}

func sessionRows(encs []encounter, mas []medAdmin, meds map[string]medication, surveys []observation,
	aes []adverseEvent, selected string) []sessionRow {
	slices.SortStableFunc(encs, func(a, b encounter) int { return strings.Compare(a.Period.Start, b.Period.Start) })
	byEnc := map[string]medAdmin{}
	for _, m := range mas {
		byEnc[refID(m.Context, "Encounter")] = m
	}
	var rows []sessionRow
	for i, e := range encs {
		r := sessionRow{N: i + 1, EncounterID: e.ID, Date: day(e.Period.Start), Status: e.Status, Selected: e.ID == selected}
		if m, ok := byEnc[e.ID]; ok {
			if m.MedicationCodeableConcept != nil {
				r.Drug = m.MedicationCodeableConcept.label()
			} else if med, ok := meds[refID(m.MedicationReference, "Medication")]; ok {
				r.Drug = drugName(med)
			}
			r.Route = strings.TrimSuffix(m.Dosage.Route.label(), " route")
			if d := m.Dosage.Dose; d != nil && d.Value != nil {
				r.DoseMg = fmtNum(*d.Value)
			}
			if x := findExt(m.Dosage.Extension, "dose-per-kg"); x != nil && x.ValueQuantity != nil && x.ValueQuantity.Value != nil {
				r.DosePerKg = fmtNum(*x.ValueQuantity.Value)
			}
			if m.EffectivePeriod != nil {
				if n, ok := minutesBetween(m.EffectivePeriod.Start, m.EffectivePeriod.End); ok {
					r.Duration = fmt.Sprint(n)
				}
			}
			if n, ok := minutesBetween(startOf(m), e.Period.End); ok {
				r.Monitoring = fmt.Sprint(n)
			}
			r.HasDoseTime = startOf(m) != ""
		}
		for _, o := range surveys {
			if refID(o.Encounter, "Encounter") != e.ID {
				continue
			}
			if val, ok := obsValue(o); ok {
				switch {
				case o.Code.has(scales, codeCADSS):
					r.CADSS = fmtNum(val)
				case o.Code.has(scales, codeMOAAS):
					r.MOAAS = fmtNum(val)
				}
			}
		}
		for _, ae := range aes {
			if refID(ae.Encounter, "Encounter") == e.ID {
				s := ae.Event.label()
				if sev := ae.Severity.label(); sev != "" {
					s += " (" + strings.ToLower(sev) + ")"
				}
				r.AdverseEvents = append(r.AdverseEvents, s)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func trends(surveys []observation, sessions []sessionRow) []trend {
	var out []trend
	for _, sc := range outcomeScales {
		var pts []point
		for _, o := range surveys {
			if !o.Code.has(sc.System, sc.Code) {
				continue
			}
			val, ok := obsValue(o)
			t, ok2 := parseWhen(o.EffectiveDateTime)
			if !ok || !ok2 {
				continue
			}
			pts = append(pts, point{When: t, Date: day(o.EffectiveDateTime), Value: val})
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortStableFunc(pts, func(a, b point) int { return a.When.Compare(b.When) })
		tr := trend{Scale: sc, Baseline: pts[0].Value}
		for i := range pts {
			if i > 0 && tr.Baseline > 0 {
				pts[i].Change = fmt.Sprintf("%+.0f%%", (pts[i].Value-tr.Baseline)/tr.Baseline*100)
			}
		}
		tr.Points = pts
		last := pts[len(pts)-1]
		tr.Latest = fmt.Sprintf("latest %s on %s, baseline %s", fmtNum(last.Value), last.Date, fmtNum(tr.Baseline))
		switch {
		case len(pts) < 2:
		case sc.Remission > 0 && last.Value < sc.Remission:
			tr.Latest += ": remission"
		case tr.Baseline > 0 && last.Value <= tr.Baseline/2:
			tr.Latest += ": response (at least 50% below baseline)"
		}
		tr.Chart = trendChart(tr, sessions)
		out = append(out, tr)
	}
	return out
}

// safetyFlags: a PHQ-9 item 9 answer of 1 or more with no C-SSRS the same
// day, and every C-SSRS of moderate or high risk.
func safetyFlags(surveys []observation) []string {
	cssrsDays := map[string]bool{}
	for _, o := range surveys {
		if o.Code.has(loinc, codeCSSRS) || o.Code.has(loinc, codeCSSRSRisk) {
			cssrsDays[day(o.EffectiveDateTime)] = true
		}
	}
	var flags, item9Days []string
	for _, o := range surveys {
		switch {
		case o.Code.has(loinc, codePHQ9Item9):
			n, ok := item9(o)
			if ok && n >= 1 && !cssrsDays[day(o.EffectiveDateTime)] {
				item9Days = append(item9Days, fmt.Sprintf("%s (%d)", day(o.EffectiveDateTime), n))
			}
		case o.Code.has(loinc, codeCSSRSRisk) && o.ValueCodeableConcept != nil:
			switch o.ValueCodeableConcept.code(local) {
			case "cssrs-risk-moderate", "cssrs-risk-high":
				flags = append(flags, fmt.Sprintf("%s: C-SSRS suicide risk %s.", day(o.EffectiveDateTime),
					strings.ToLower(o.ValueCodeableConcept.label())))
			}
		}
	}
	slices.Sort(flags)
	if len(item9Days) > 0 {
		slices.Sort(item9Days)
		flags = append([]string{"PHQ-9 item 9 (thoughts of self-harm) scored 1 or more with no C-SSRS the same day: " +
			strings.Join(item9Days, ", ") + " (score in brackets)."}, flags...)
	}
	return flags
}

// item9 is the PHQ-9 item 9 score: the answer's ordinalValue, else the
// LOINC answer code.
func item9(o observation) (int, bool) {
	if o.ValueInteger != nil {
		return *o.ValueInteger, true
	}
	if o.ValueCodeableConcept == nil {
		return 0, false
	}
	for _, c := range o.ValueCodeableConcept.Coding {
		for _, e := range c.Extension {
			if e.URL == ordinalEx && e.ValueDecimal != nil {
				return int(*e.ValueDecimal), true
			}
		}
		if n, ok := map[string]int{"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}[c.Code]; ok && c.System == loinc {
			return n, true
		}
	}
	return 0, false
}

func courseSummary(plans []carePlan, encs []encounter) *summary {
	s := &summary{}
	if len(plans) > 0 {
		p := plans[0]
		for _, q := range plans[1:] {
			if q.Period.Start > p.Period.Start {
				p = q
			}
		}
		if len(p.InstantiatesCanonical) > 0 {
			c := p.InstantiatesCanonical[0]
			s.Protocol = c[strings.LastIndex(c, "/")+1:]
		}
		s.Status, s.Start, s.planID = p.Status, p.Period.Start, p.ID
		for _, c := range p.Category {
			if c.code(local) != "" {
				s.Phase = c.label()
			}
		}
	}
	for _, e := range encs {
		switch e.Status {
		case "finished", "in-progress":
			s.Given++
		case "planned", "arrived", "triaged":
			s.Planned++
		case "cancelled":
			s.Cancelled++
		}
	}
	return s
}

func antidepressants(ms []medStatement) []trial {
	var out []trial
	for _, m := range ms {
		t := trial{Drug: m.MedicationCodeableConcept.label()}
		if x := findExt(m.Extension, "antidepressant-class"); x != nil && x.ValueCodeableConcept != nil {
			t.Class = x.ValueCodeableConcept.label()
		}
		if x := findExt(m.Extension, "antidepressant-adequate"); x != nil && x.ValueBoolean != nil {
			t.Adequate = map[bool]string{true: "adequate", false: "not adequate"}[*x.ValueBoolean]
		}
		if x := findExt(m.Extension, "antidepressant-improvement"); x != nil && x.ValueQuantity != nil && x.ValueQuantity.Value != nil {
			t.Improvement = fmtNum(*x.ValueQuantity.Value) + "%"
		}
		if len(m.StatusReason) > 0 {
			t.Outcome = m.StatusReason[0].label()
		}
		if m.EffectivePeriod != nil {
			t.Period = strings.TrimSuffix(day(m.EffectivePeriod.Start)+" to "+day(m.EffectivePeriod.End), " to ")
		}
		out = append(out, t)
	}
	return out
}

// vitalsShared reports whether the granted scope lets the app search vital
// signs at all (a granular grant such as patient/Observation.rs?category=survey
// does not; the gateway then narrows the search to nothing, and the page
// says "not shared" instead of "none recorded").
func vitalsShared(scope string) bool {
	g, _ := auth.ParseGrant(scope)
	for _, s := range g.Resource {
		if (s.ResourceType != "Observation" && s.ResourceType != "*") || s.Perms&auth.PermSearch == 0 {
			continue
		}
		if len(s.Filters) == 0 {
			return true
		}
		ok := true
		for _, f := range s.Filters {
			if f.Param != "category" || f.Code != "vital-signs" {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func sessionMonitoring(ctx context.Context, r *reader, pid, scope string, s sessionRow, mas []medAdmin) (*monitoring, error) {
	m := &monitoring{Session: s}
	if !vitalsShared(scope) {
		m.NotShared = true
		return m, nil
	}
	obs, err := decodeAll[observation](r.search(ctx, "Observation", url.Values{
		"patient": {pid}, "encounter": {"Encounter/" + s.EncounterID}, "category": {"vital-signs"}}))
	if errors.Is(err, errNotShared) {
		m.NotShared = true
		return m, nil
	} else if err != nil {
		return nil, err
	}
	var doseStart, doseEnd string
	for _, a := range mas {
		if refID(a.Context, "Encounter") == s.EncounterID {
			doseStart = startOf(a)
			if a.EffectivePeriod != nil {
				doseEnd = a.EffectivePeriod.End
			}
		}
	}
	t0, ok := parseWhen(doseStart)
	if !ok {
		m.Flags = append(m.Flags, "No dose time is recorded, so minutes since dose cannot be shown.")
		return m, nil
	}
	// One row per measurement time: the readings taken together (blood
	// pressure, heart rate, SpO2 at one instant) share a row; a second
	// reading of the same kind, in the same minute or even at the same
	// instant, gets a row of its own: no Observation ever hides another.
	var rows []*vitalRow
	row := func(when string, taken func(*vitalRow) bool) *vitalRow {
		t, ok := parseWhen(when)
		if !ok {
			return nil
		}
		k := t.UnixNano()
		for _, r := range rows {
			if r.at == k && !taken(r) {
				return r
			}
		}
		r := &vitalRow{Minute: int(math.Round(t.Sub(t0).Minutes())), at: k}
		rows = append(rows, r)
		return r
	}
	for _, o := range obs {
		switch {
		case o.Code.has(loinc, codeBP):
			vr := row(o.EffectiveDateTime, func(r *vitalRow) bool { return r.hasSys || r.Dia != "" })
			if vr == nil {
				continue
			}
			for _, c := range o.Component {
				if c.ValueQuantity == nil || c.ValueQuantity.Value == nil {
					continue
				}
				switch {
				case c.Code.has(loinc, codeSys):
					vr.sys, vr.Sys, vr.hasSys = *c.ValueQuantity.Value, fmtNum(*c.ValueQuantity.Value), true
				case c.Code.has(loinc, codeDia):
					vr.dia, vr.Dia = *c.ValueQuantity.Value, fmtNum(*c.ValueQuantity.Value)
				}
			}
		case o.Code.has(loinc, codeHR):
			if val, ok := obsValue(o); ok {
				if vr := row(o.EffectiveDateTime, func(r *vitalRow) bool { return r.hasHR }); vr != nil {
					vr.hr, vr.HR, vr.hasHR = val, fmtNum(val), true
				}
			}
		case o.Code.has(loinc, codeSpO2):
			if val, ok := obsValue(o); ok {
				if vr := row(o.EffectiveDateTime, func(r *vitalRow) bool { return r.hasSpO2 }); vr != nil {
					vr.spo2, vr.SpO2, vr.hasSpO2 = val, fmtNum(val), true
				}
			}
		}
	}
	for _, vr := range rows {
		if vr.hasSys || vr.hasHR || vr.hasSpO2 {
			m.Rows = append(m.Rows, *vr)
		}
	}
	slices.SortStableFunc(m.Rows, func(a, b vitalRow) int { return cmp.Compare(a.at, b.at) })
	m.Flags = append(m.Flags, monitoringFlags(m.Rows, t0, doseEnd)...)
	m.Charts = monitoringCharts(m.Rows)
	return m, nil
}

// Spravato REMS monitoring: blood pressure before dosing (above 140/90 the
// dose is deferred), again about 40 minutes after, and until discharge.
const (
	preDoseSys, preDoseDia = 140, 90
	fortyFrom, fortyTo     = 30, 50
)

func monitoringFlags(rows []vitalRow, t0 time.Time, doseEnd string) []string {
	var flags []string
	var pre *vitalRow
	forty := false
	for i := range rows {
		r := &rows[i]
		if r.Minute <= 0 && r.hasSys {
			pre = r
		}
		if r.Minute >= fortyFrom && r.Minute <= fortyTo && r.hasSys {
			forty = true
		}
	}
	switch {
	case pre == nil:
		flags = append(flags, "Missing: no blood pressure before dosing.")
	case pre.sys > preDoseSys || pre.dia > preDoseDia:
		flags = append(flags, fmt.Sprintf("Pre-dose blood pressure %s/%s is above %d/%d.", pre.Sys, pre.Dia, preDoseSys, preDoseDia))
	}
	if !forty {
		flags = append(flags, fmt.Sprintf("Missing: no blood pressure about 40 minutes after the dose (%d to %d min).", fortyFrom, fortyTo))
	}
	if end, ok := parseWhen(doseEnd); ok {
		after := false
		for _, r := range rows {
			if float64(r.Minute) >= end.Sub(t0).Minutes() {
				after = true
			}
		}
		if !after {
			flags = append(flags, "Missing: no measurement after the dose ended (discharge).")
		}
	}
	for _, r := range rows {
		if r.Minute > 0 && r.hasSys && (r.sys > 180 || r.dia > 110) {
			flags = append(flags, fmt.Sprintf("Blood pressure %s/%s at %d min.", r.Sys, r.Dia, r.Minute))
		}
		if r.hasSpO2 && r.spo2 < 90 {
			flags = append(flags, fmt.Sprintf("SpO2 %s%% at %d min.", r.SpO2, r.Minute))
		}
	}
	return flags
}
