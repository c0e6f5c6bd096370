package priorauth

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Status is the answer for one criterion or the whole set.
type Status string

// The answers.
const (
	Met     Status = "met"
	NotMet  Status = "not-met"
	Unknown Status = "unknown"
)

// Result is one criterion's answer: the status, the resources used as
// evidence ("Type/id", sorted) and a human-readable reason.
type Result struct {
	Code, Text string
	Status     Status
	Evidence   []string
	Reason     string
}

// Evaluation is a course checked against a policy.
type Evaluation struct {
	Policy *Policy
	// CarePlan is the course, "CarePlan/id".
	CarePlan string
	Renewal  bool
	Criteria []Result
	// Result is not-met when any criterion is not met, else unknown when
	// any is unknown, else met.
	Result Status
}

// Evidence lists every resource any criterion used, once, sorted.
func (ev *Evaluation) Evidence() []string {
	var out []string
	for _, r := range ev.Criteria {
		out = append(out, r.Evidence...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Codes and systems the rules read.
const (
	loincPHQ9Total = "44261-6"
	madrsTotal     = "madrs-total"
	// NUCC is the NUCC Health Care Provider Taxonomy code system.
	NUCC = codes.NUCCTaxonomy
)

// ErrNoCourse is returned when the CarePlan is not in the records.
var ErrNoCourse = errors.New("priorauth: the course's CarePlan is not in the records")

// Course is what the rules need to know about a course, resolved from its
// CarePlan.
type Course struct {
	Key       string // CarePlan/id
	Plan      *r4.CarePlan
	OrderKey  string // MedicationRequest/id
	Order     *r4.MedicationRequest
	Condition string // Condition/id the course addresses
	Patient   string // Patient/id
	// Start is the course start; FirstSession the first dose (or Start
	// when no dose is recorded, or when it is later).
	Start, FirstSession *time.Time
	// Sessions are the Encounters with a dose of the course, sorted.
	Sessions []string
	Therapy  string // esketamine, ketamine or ""
	// Route is the SNOMED CT code of the order's route of administration
	// (its first dosage naming one), "" when none is recorded.
	Route string
}

// ResolveCourse finds the course of CarePlan carePlanID in rs.
func ResolveCourse(rs *Records, carePlanID string) (*Course, error) {
	key := "CarePlan/" + carePlanID
	cp, ok := rs.CarePlans[key]
	if !ok {
		return nil, ErrNoCourse
	}
	c := &Course{Key: key, Plan: cp, Patient: refKey(&cp.Subject)}
	for _, a := range cp.Activity {
		if k := refKey(a.Reference); strings.HasPrefix(k, "MedicationRequest/") {
			if mr, ok := rs.MedRequests[k]; ok {
				c.OrderKey, c.Order = k, mr
				break
			}
		}
	}
	for i := range cp.Addresses {
		if k := refKey(&cp.Addresses[i]); strings.HasPrefix(k, "Condition/") {
			c.Condition = k
			break
		}
	}
	if cp.Period != nil {
		c.Start = day(cp.Period.Start)
	}
	c.FirstSession = c.Start
	if c.OrderKey != "" {
		seen := map[string]bool{}
		for _, k := range sortedKeys(rs.MedAdministration) {
			ma := rs.MedAdministration[k]
			if refKey(ma.Request) != c.OrderKey || ma.Status == "not-done" {
				continue
			}
			when := &ma.EffectiveDateTime
			if *when == "" {
				when = ma.EffectivePeriod.Start
			}
			if d := day(when); d != nil && (c.FirstSession == nil || d.Before(*c.FirstSession)) {
				c.FirstSession = d
			}
			if e := refKey(ma.Context); e != "" && !seen[e] {
				seen[e] = true
				c.Sessions = append(c.Sessions, e)
			}
		}
		slices.Sort(c.Sessions)
		c.Therapy = therapyOf(rs, c.Order)
		c.Route = routeOf(c.Order)
	}
	return c, nil
}

// routeOf reads the SNOMED CT route of the order's first dosage that names
// one.
func routeOf(mr *r4.MedicationRequest) string {
	for _, d := range mr.DosageInstruction {
		if d.Route == nil {
			continue
		}
		for _, cd := range d.Route.Coding {
			if cd.System != nil && *cd.System == codes.SNOMED && cd.Code != nil {
				return *cd.Code
			}
		}
	}
	return ""
}

// therapyOf reads the therapy from the order's medication codes.
func therapyOf(rs *Records, mr *r4.MedicationRequest) string {
	cc := &mr.MedicationCodeableConcept
	if m, ok := rs.Medications[refKey(&mr.MedicationReference)]; ok {
		cc = m.Code
	}
	if cc == nil {
		return ""
	}
	for _, cd := range cc.Coding {
		if cd.System == nil || *cd.System != codes.RxNorm || cd.Code == nil {
			continue
		}
		switch *cd.Code {
		case "2201623", "2201625":
			return TherapyEsketamine
		case "6130", "238083":
			return TherapyKetamine
		}
	}
	return ""
}

// Evaluate checks the course against the policy's criteria (renewal: its
// renewal criteria). It reads rs only.
func Evaluate(p *Policy, rs *Records, c *Course, renewal bool) *Evaluation {
	set := p.Criteria
	if renewal {
		set = p.Renewal
	}
	ev := &Evaluation{Policy: p, CarePlan: c.Key, Renewal: renewal, Result: Met}
	for _, cr := range set {
		r := evalOne(cr, rs, c)
		r.Code, r.Text = cr.Code, cr.Text
		slices.Sort(r.Evidence)
		r.Evidence = slices.Compact(r.Evidence)
		ev.Criteria = append(ev.Criteria, r)
		switch {
		case r.Status == NotMet:
			ev.Result = NotMet
		case r.Status == Unknown && ev.Result == Met:
			ev.Result = Unknown
		}
	}
	if len(ev.Criteria) == 0 {
		ev.Result = Unknown
	}
	return ev
}

func evalOne(cr Criterion, rs *Records, c *Course) Result {
	switch cr.Rule {
	case RuleAgeMin:
		return ageMin(cr, rs, c)
	case RuleDiagnosis:
		return diagnosis(cr, rs, c)
	case RuleFailedTrials:
		return failedTrials(cr, rs, c)
	case RuleBaselineScore:
		return baselineScore(cr, rs, c)
	case RuleConcurrentAntidepressant:
		return concurrent(rs, c)
	case RuleREMS:
		return rems(rs, c)
	case RuleNoCondition:
		return noCondition(cr, rs)
	case RuleDosePlan:
		return dosePlan(cr, rs, c)
	case RulePrescriberTaxonomy:
		return prescriber(cr, rs, c)
	case RuleResponse:
		return response(cr, rs, c)
	case RuleAttestation:
		return unknown("the records cannot show this; the clinic attests it to the payer")
	}
	return unknown("unknown rule")
}

func unknown(reason string) Result { return Result{Status: Unknown, Reason: reason} }

func hidden(rs *Records, typ string) Result {
	return unknown(typ + " records are not available to this requester")
}

func ageMin(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["Patient"] {
		return hidden(rs, "Patient")
	}
	p, ok := rs.Patients[c.Patient]
	if !ok || p.BirthDate == nil || len(*p.BirthDate) != 10 {
		return unknown("the patient's full birth date is not recorded")
	}
	if c.Start == nil {
		return unknown("the course has no start date")
	}
	b := day(p.BirthDate)
	if b == nil {
		return unknown("the patient's birth date is not a date")
	}
	age := c.Start.Year() - b.Year()
	if c.Start.Month() < b.Month() || c.Start.Month() == b.Month() && c.Start.Day() < b.Day() {
		age--
	}
	r := Result{Evidence: []string{c.Patient}, Reason: "age " + strconv.Itoa(age) + " at the start of the course"}
	r.Status = NotMet
	if age >= cr.Years {
		r.Status = Met
	}
	return r
}

// icdCode is a Condition's ICD-10-CM code ("" for none).
func icdCode(cd *r4.Condition) string {
	if cd.Code == nil {
		return ""
	}
	for _, c := range cd.Code.Coding {
		if c.System != nil && *c.System == codes.ICD10CM && c.Code != nil {
			return *c.Code
		}
	}
	return ""
}

// matchICD reports whether code is one of the codes or under one of the
// prefixes ("F33" matches F33.2, "I67.1" matches I67.1 and I67.10).
func matchICD(code string, list []string) bool {
	for _, p := range list {
		if code == p || strings.HasPrefix(code, p) && (strings.Contains(p, ".") || code[len(p)] == '.') {
			return true
		}
	}
	return false
}

// activeCondition: clinicalStatus active, recurrence or relapse (or none
// recorded, which counts as active: a diagnosis is not assumed resolved).
func activeCondition(cd *r4.Condition) bool {
	if cd.ClinicalStatus == nil {
		return true
	}
	for _, c := range cd.ClinicalStatus.Coding {
		if c.Code != nil {
			switch *c.Code {
			case "active", "recurrence", "relapse":
				return true
			}
			return false
		}
	}
	return true
}

func diagnosis(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["Condition"] {
		return hidden(rs, "Condition")
	}
	cd, ok := rs.Conditions[c.Condition]
	if !ok {
		return unknown("the course names no diagnosis in the records")
	}
	code := icdCode(cd)
	r := Result{Evidence: []string{c.Condition}}
	switch {
	case code == "":
		return unknown("the course's diagnosis has no ICD-10-CM code")
	case !matchICD(code, cr.ICD10):
		r.Status, r.Reason = NotMet, "the course treats ICD-10-CM "+code+", not "+strings.Join(cr.ICD10, " or ")
	case !activeCondition(cd):
		r.Status, r.Reason = NotMet, "the diagnosis ICD-10-CM "+code+" is not active"
	default:
		r.Status, r.Reason = Met, "ICD-10-CM "+code+", active"
	}
	return r
}

// trial is an antidepressant trial as the failed-trials rule reads it.
type trial struct {
	key         string
	class       string
	dose        bool
	start, end  *time.Time
	improvement *float64
}

func readTrial(key string, ms *r4.MedicationStatement) trial {
	t := trial{key: key}
	for _, x := range ms.Extension {
		switch x.Url {
		case codes.ExtTrialClass:
			if cc := x.ValueCodeableConcept; cc != nil {
				for _, cd := range cc.Coding {
					if cd.System != nil && *cd.System == codes.Local && cd.Code != nil {
						t.class = *cd.Code
					}
				}
				if t.class == "" && cc.Text != nil {
					t.class = strings.ToLower(*cc.Text)
				}
			}
		case codes.ExtTrialImprovement:
			if q := x.ValueQuantity; q != nil && q.Value != nil {
				if f, err := q.Value.Float64(); err == nil {
					t.improvement = &f
				}
			}
		}
	}
	for _, d := range ms.Dosage {
		for _, dr := range d.DoseAndRate {
			if q := dr.DoseQuantity; q != nil && q.Value != nil {
				t.dose = true
			}
		}
	}
	if p := ms.EffectivePeriod; p != nil {
		t.start, t.end = day(p.Start), day(p.End)
	} else {
		t.start = day(ms.EffectiveDateTime)
	}
	return t
}

func failedTrials(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["MedicationStatement"] {
		return hidden(rs, "MedicationStatement")
	}
	var onset *time.Time
	if cd, ok := rs.Conditions[c.Condition]; ok {
		onset = day(cd.OnsetDateTime)
	}
	failed := map[string][]string{}  // class -> trials that count
	undecided := map[string]string{} // class -> first trial lacking data
	var notes []string
	minDays := cr.MinWeeks * 7
	for _, k := range sortedKeys(rs.MedStatements) {
		t := readTrial(k, rs.MedStatements[k])
		if t.class == "" || t.start == nil {
			continue // not an antidepressant trial record
		}
		if onset != nil && t.end != nil && t.end.Before(*onset) {
			notes = append(notes, k+" ended before the current episode")
			continue
		}
		end := t.end
		if end == nil {
			end = c.Start // an ongoing trial counts up to the course start
		}
		var missing []string
		if !t.dose {
			missing = append(missing, "no dose")
		}
		if t.improvement == nil {
			missing = append(missing, "no measured improvement")
		}
		if end == nil {
			missing = append(missing, "no end")
		}
		if end != nil && days(*t.start, *end) < minDays {
			notes = append(notes, k+" lasted "+strconv.Itoa(days(*t.start, *end))+" days")
			continue
		}
		if t.improvement != nil && *t.improvement > cr.MaxImprovementPercent {
			notes = append(notes, k+" improved "+fmtNum(*t.improvement)+" %")
			continue
		}
		if len(missing) > 0 {
			if _, ok := undecided[t.class]; !ok {
				undecided[t.class] = k + " has " + strings.Join(missing, ", ")
			}
			continue
		}
		failed[t.class] = append(failed[t.class], k)
	}
	r := Result{}
	for _, ks := range failed {
		r.Evidence = append(r.Evidence, ks...)
	}
	n := len(failed)
	reason := strconv.Itoa(n) + " failed trial class(es) of " + strconv.Itoa(cr.Count) + " required"
	if n >= cr.Count {
		r.Status, r.Reason = Met, reason
		return r
	}
	extra := 0
	var why []string
	for _, cl := range sortedKeys(undecided) {
		if _, ok := failed[cl]; !ok {
			extra++
			why = append(why, undecided[cl])
		}
	}
	if n+extra >= cr.Count {
		r.Status, r.Reason = Unknown, reason+"; "+strings.Join(why, "; ")
		return r
	}
	if len(rs.MedStatements) == 0 {
		return unknown("no antidepressant history is recorded")
	}
	if len(notes) > 0 {
		reason += "; " + strings.Join(notes, "; ")
	}
	r.Status, r.Reason = NotMet, reason
	return r
}

// score is one PHQ-9 or MADRS total.
type score struct {
	key   string
	madrs bool
	value int
	when  time.Time
}

func scores(rs *Records) []score {
	var out []score
	for _, k := range sortedKeys(rs.Observations) {
		o := rs.Observations[k]
		if o.Status == r4.ObservationStatusEnteredInError || o.ValueInteger == nil {
			continue
		}
		madrs := false
		switch {
		case hasCode(&o.Code, codes.LOINC, loincPHQ9Total):
		case hasCode(&o.Code, codes.Scales, madrsTotal):
			madrs = true
		default:
			continue
		}
		when := o.EffectiveDateTime
		if when == nil && o.EffectivePeriod != nil {
			when = o.EffectivePeriod.Start
		}
		if d := day(when); d != nil {
			out = append(out, score{k, madrs, *o.ValueInteger, *d})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].when.Before(out[j].when) })
	return out
}

func (s score) name() string {
	if s.madrs {
		return "MADRS " + strconv.Itoa(s.value)
	}
	return "PHQ-9 " + strconv.Itoa(s.value)
}

func baselineScore(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["Observation"] {
		return hidden(rs, "Observation")
	}
	if c.FirstSession == nil {
		return unknown("the course has no start date")
	}
	first := *c.FirstSession
	var inWindow []score
	nearest := -1
	for _, s := range scores(rs) {
		if s.madrs && cr.MADRSMin <= 0 || !s.madrs && cr.PHQ9Min <= 0 {
			continue
		}
		d := days(s.when, first)
		switch {
		case d < 0:
			continue
		case d <= cr.WindowDays:
			inWindow = append(inWindow, s)
		case nearest < 0 || d < nearest:
			nearest = d
		}
	}
	for i := len(inWindow) - 1; i >= 0; i-- {
		s := inWindow[i]
		if s.madrs && s.value >= cr.MADRSMin || !s.madrs && s.value >= cr.PHQ9Min {
			return Result{Status: Met, Evidence: []string{s.key},
				Reason: s.name() + ", " + strconv.Itoa(days(s.when, first)) + " days before the first session"}
		}
	}
	if len(inWindow) > 0 {
		s := inWindow[len(inWindow)-1]
		return Result{Status: NotMet, Evidence: []string{s.key}, Reason: s.name() + " is below the threshold"}
	}
	if nearest >= 0 {
		return Result{Status: NotMet, Reason: "no score within " + strconv.Itoa(cr.WindowDays) +
			" days before the first session; the nearest is " + strconv.Itoa(nearest) + " days before"}
	}
	return unknown("no baseline PHQ-9 or MADRS is recorded")
}

func concurrent(rs *Records, c *Course) Result {
	if rs.Hidden["MedicationStatement"] {
		return hidden(rs, "MedicationStatement")
	}
	if len(rs.MedStatements) == 0 {
		return unknown("no antidepressant history is recorded")
	}
	for _, k := range sortedKeys(rs.MedStatements) {
		ms := rs.MedStatements[k]
		t := readTrial(k, ms)
		if t.class == "" || t.start == nil {
			continue
		}
		current := ms.Status == "active"
		if !current && c.Start != nil && t.end != nil {
			current = !t.start.After(*c.Start) && !t.end.Before(*c.Start)
		}
		if current {
			return Result{Status: Met, Evidence: []string{k}, Reason: "an antidepressant is taken at the start of the course"}
		}
	}
	return Result{Status: NotMet, Reason: "no antidepressant is recorded as taken at the start of the course"}
}

func rems(rs *Records, c *Course) Result {
	if rs.Hidden["Observation"] {
		return hidden(rs, "Observation")
	}
	r := Result{}
	// The patient's enrolment: the latest REMS monitoring form.
	var latest string
	var latestAt time.Time
	var enrolled *bool
	for _, k := range sortedKeys(rs.Observations) {
		o := rs.Observations[k]
		if !hasCode(&o.Code, codes.Local, codes.REMSMonitoring.Code) || o.EffectiveDateTime == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339, *o.EffectiveDateTime)
		if err != nil || latest != "" && !t.After(latestAt) {
			continue
		}
		for _, comp := range o.Component {
			if hasCode(&comp.Code, codes.Local, codes.REMSEnrolled.Code) && comp.ValueBoolean != nil {
				latest, latestAt, enrolled = k, t, comp.ValueBoolean
			}
		}
	}
	patient := Unknown
	var reasons []string
	if enrolled != nil {
		r.Evidence = append(r.Evidence, latest)
		if *enrolled {
			patient = Met
		} else {
			patient = NotMet
			reasons = append(reasons, "the latest REMS monitoring form says the patient is not enrolled")
		}
	} else {
		reasons = append(reasons, "no REMS monitoring form records the patient's enrolment")
	}
	// The settings: every location of the course's sessions.
	site := Unknown
	if rs.Hidden["Location"] || rs.Hidden["Encounter"] {
		reasons = append(reasons, "the treatment settings are not available to this requester")
	} else {
		locs := map[string]bool{}
		for _, e := range c.Sessions {
			if enc, ok := rs.Encounters[e]; ok {
				for _, l := range enc.Location {
					if k := refKey(&l.Location); k != "" {
						locs[k] = true
					}
				}
			}
		}
		if len(locs) == 0 {
			reasons = append(reasons, "no session of the course names its setting yet")
		} else {
			site = Met
			for _, k := range sortedKeys(locs) {
				loc, ok := rs.Locations[k]
				if !ok {
					site = worse(site, Unknown)
					reasons = append(reasons, k+" is not in the records")
					continue
				}
				r.Evidence = append(r.Evidence, k)
				certified := false
				for _, x := range loc.Extension {
					if x.Url == codes.ExtREMSCertified && x.ValueBoolean != nil && *x.ValueBoolean {
						certified = true
					}
				}
				if !certified {
					site = NotMet
					reasons = append(reasons, k+" is not REMS-certified")
				}
			}
		}
	}
	r.Status = worse(patient, site)
	if r.Status == Met {
		r.Reason = "enrolled; every setting REMS-certified"
	} else {
		r.Reason = strings.Join(reasons, "; ")
	}
	return r
}

// worse combines two answers: not-met over unknown over met.
func worse(a, b Status) Status {
	if a == NotMet || b == NotMet {
		return NotMet
	}
	if a == Unknown || b == Unknown {
		return Unknown
	}
	return Met
}

func noCondition(cr Criterion, rs *Records) Result {
	if rs.Hidden["Condition"] {
		return hidden(rs, "Condition")
	}
	r := Result{Status: Met, Reason: "no recorded condition is a contraindication"}
	var found []string
	for _, k := range sortedKeys(rs.Conditions) {
		cd := rs.Conditions[k]
		if code := icdCode(cd); code != "" && activeCondition(cd) && matchICD(code, cr.ICD10) {
			r.Evidence = append(r.Evidence, k)
			found = append(found, "ICD-10-CM "+code)
		}
	}
	if len(found) > 0 {
		r.Status, r.Reason = NotMet, "recorded: "+strings.Join(found, ", ")
	}
	return r
}

func dosePlan(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["MedicationRequest"] {
		return hidden(rs, "MedicationRequest")
	}
	if c.Order == nil {
		return unknown("the course has no order in the records")
	}
	r := Result{Evidence: []string{c.OrderKey}}
	var problems []string
	checked := 0
	for i, d := range c.Order.DosageInstruction {
		var dose *r4.Quantity
		for _, dr := range d.DoseAndRate {
			if dr.DoseQuantity != nil && dr.DoseQuantity.Value != nil {
				dose = dr.DoseQuantity
			}
		}
		if dose == nil {
			continue
		}
		checked++
		v, _ := dose.Value.Float64()
		maxV := v
		if m := d.MaxDosePerAdministration; m != nil && m.Value != nil {
			maxV, _ = m.Value.Float64()
		}
		unit := ""
		if dose.Code != nil {
			unit = *dose.Code
		}
		switch unit {
		case "mg":
			if cr.MaxMgPerKg > 0 && len(cr.AllowedMg) == 0 {
				problems = append(problems, "the dose is not weight-based")
			}
			if len(cr.AllowedMg) > 0 && !slices.Contains(cr.AllowedMg, v) {
				problems = append(problems, fmtNum(v)+" mg a session is not "+joinNums(cr.AllowedMg, " or ")+" mg")
			}
			if len(cr.AllowedMg) > 0 && maxV > slices.Max(cr.AllowedMg) {
				problems = append(problems, "up to "+fmtNum(maxV)+" mg a session")
			}
			// The weekly limit applies to induction (the first phase).
			if cr.MaxWeeklyMg > 0 && i == 0 {
				if perWeek, ok := sessionsPerWeek(d.Timing); ok && maxV*perWeek > cr.MaxWeeklyMg+1e-9 {
					problems = append(problems, "up to "+fmtNum(maxV*perWeek)+" mg a week in induction")
				}
			}
		case "mg/kg":
			if len(cr.AllowedMg) > 0 {
				problems = append(problems, "a weight-based dose where fixed doses are required")
			}
			if cr.MaxMgPerKg > 0 && maxV > cr.MaxMgPerKg+1e-9 {
				problems = append(problems, "up to "+fmtNum(maxV)+" mg/kg a session")
			}
		default:
			problems = append(problems, "a dose in an unrecognised unit")
		}
	}
	switch {
	case checked == 0:
		return Result{Status: Unknown, Evidence: r.Evidence, Reason: "the order has no structured dose"}
	case len(problems) > 0:
		r.Status, r.Reason = NotMet, strings.Join(problems, "; ")
	default:
		r.Status, r.Reason = Met, "within the policy's dose limits"
	}
	return r
}

// sessionsPerWeek reads a Timing's frequency per period as sessions a week.
func sessionsPerWeek(t *r4.Timing) (float64, bool) {
	if t == nil || t.Repeat == nil || t.Repeat.Frequency == nil || t.Repeat.Period == nil || t.Repeat.PeriodUnit == nil {
		return 0, false
	}
	p, err := t.Repeat.Period.Float64()
	if err != nil || p <= 0 {
		return 0, false
	}
	var weeks float64
	switch *t.Repeat.PeriodUnit {
	case "wk":
		weeks = p
	case "d":
		weeks = p / 7
	case "mo":
		weeks = p * 30 / 7
	default:
		return 0, false
	}
	return float64(*t.Repeat.Frequency) / weeks, true
}

func prescriber(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["Practitioner"] {
		return hidden(rs, "Practitioner")
	}
	var ref *r4.Reference
	if c.Order != nil {
		ref = c.Order.Requester
	}
	if ref == nil {
		ref = c.Plan.Author
	}
	key := refKey(ref)
	p, ok := rs.Practitioners[key]
	if !ok {
		return unknown("the prescriber is not in the records")
	}
	var have []string
	for _, q := range p.Qualification {
		for _, cd := range q.Code.Coding {
			if cd.System != nil && *cd.System == NUCC && cd.Code != nil {
				have = append(have, *cd.Code)
			}
		}
	}
	r := Result{Evidence: []string{key}}
	switch {
	case len(have) == 0:
		r.Status, r.Reason = Unknown, "the prescriber's specialty (NUCC taxonomy) is not recorded"
	case slices.ContainsFunc(have, func(s string) bool { return slices.Contains(cr.Taxonomy, s) }):
		r.Status, r.Reason = Met, "NUCC taxonomy "+strings.Join(have, ", ")
	default:
		r.Status, r.Reason = NotMet, "NUCC taxonomy "+strings.Join(have, ", ")+" is not "+strings.Join(cr.Taxonomy, " or ")
	}
	return r
}

func response(cr Criterion, rs *Records, c *Course) Result {
	if rs.Hidden["Observation"] {
		return hidden(rs, "Observation")
	}
	if c.FirstSession == nil {
		return unknown("the course has no start date")
	}
	first := *c.FirstSession
	var base, follow *score
	all := scores(rs)
	for i := range all {
		s := &all[i]
		if s.madrs {
			continue
		}
		d := days(first, s.when)
		switch {
		case d <= 0:
			base = s // the latest on or before the first session
		case d >= cr.FromWeek*7 && d <= cr.ToWeek*7:
			follow = s // the latest in the window
		}
	}
	if base == nil {
		return unknown("no baseline PHQ-9 is recorded")
	}
	if follow == nil {
		return Result{Status: Unknown, Evidence: []string{base.key},
			Reason: "no PHQ-9 between weeks " + strconv.Itoa(cr.FromWeek) + " and " + strconv.Itoa(cr.ToWeek)}
	}
	r := Result{Evidence: []string{base.key, follow.key}}
	if base.value == 0 {
		r.Status, r.Reason = NotMet, "the baseline PHQ-9 is 0"
		return r
	}
	red := float64(base.value-follow.value) / float64(base.value) * 100
	red = math.Round(red*10) / 10
	r.Reason = "PHQ-9 " + strconv.Itoa(base.value) + " to " + strconv.Itoa(follow.value) + ": " + fmtNum(red) + " % reduction"
	r.Status = NotMet
	if red >= cr.MinReductionPercent {
		r.Status = Met
	}
	return r
}

// hasCode reports whether cc has a coding system|code.
func hasCode(cc *r4.CodeableConcept, system, code string) bool {
	if cc == nil {
		return false
	}
	for _, c := range cc.Coding {
		if c.System != nil && *c.System == system && c.Code != nil && *c.Code == code {
			return true
		}
	}
	return false
}

// day reads the calendar date of a FHIR date or dateTime as written (the
// clinic's local date), as midnight UTC; nil when absent or partial.
func day(s *string) *time.Time {
	if s == nil || len(*s) < 10 {
		return nil
	}
	t, err := time.Parse(time.DateOnly, (*s)[:10])
	if err != nil {
		return nil
	}
	return &t
}

// days is the number of calendar days from a to b.
func days(a, b time.Time) int { return int(math.Round(b.Sub(a).Hours() / 24)) }

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func joinNums(fs []float64, sep string) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmtNum(f)
	}
	return strings.Join(s, sep)
}

func sortedKeys[T any](m map[string]T) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// String is a one-line summary (no PHI: codes and statuses only).
func (ev *Evaluation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:", ev.Policy.ID, ev.Result)
	for _, r := range ev.Criteria {
		fmt.Fprintf(&b, " %s=%s", r.Code, r.Status)
	}
	return b.String()
}
