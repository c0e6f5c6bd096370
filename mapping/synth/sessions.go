package synth

import (
	"fmt"
	"math"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

// inductionDays are day offsets of the induction series per protocol.
var inductionDays = map[string][][]int{
	protoIV:      {{0, 2, 4, 7, 9, 11}, {0, 3, 7, 10, 14, 17}},
	protoSpr:     {{0, 3, 7, 10, 14, 17, 21, 24, 28, 35, 42, 49}}, // 2/week x 4, weekly x 4
	protoIM:      {{0, 3, 7, 10, 14, 17}},
	protoLozenge: {{0, 3, 7, 10, 14, 17, 21, 24}},
}

// maintenanceGap is the range of days between maintenance sessions.
var maintenanceGap = map[string][2]int{
	protoIV:      {21, 42},
	protoSpr:     {7, 14},
	protoIM:      {14, 28},
	protoLozenge: {7, 14},
}

var inductionSessions = map[string]int{protoIV: 6, protoSpr: 8, protoIM: 6, protoLozenge: 8}

// sessionDays returns count session dates (midnight), on weekdays, strictly
// increasing.
func (g *patientGen) sessionDays(count int) []time.Time {
	patterns := inductionDays[g.protocol]
	pattern := patterns[g.rng.IntN(len(patterns))]
	gap := maintenanceGap[g.protocol]
	out := make([]time.Time, 0, count)
	offset := 0
	for k := range count {
		if k < len(pattern) {
			offset = pattern[k]
		} else {
			offset += g.between(gap[0], gap[1])
		}
		d := g.start.AddDate(0, 0, offset)
		if len(out) > 0 && !d.After(out[len(out)-1]) {
			d = out[len(out)-1].AddDate(0, 0, 1)
		}
		switch d.Weekday() {
		case time.Saturday:
			d = d.AddDate(0, 0, 2)
		case time.Sunday:
			d = d.AddDate(0, 0, 1)
		}
		out = append(out, d)
	}
	return out
}

// sessions generates the course's sessions and completes the course record
// (status, phase, end) to match them.
func (g *patientGen) sessions(c *clinic.Course) []*clinic.Session {
	var count int
	switch {
	case g.responder:
		count = g.between(15, 30)
	case g.protocol == protoIV || g.protocol == protoIM:
		count = g.between(8, 12)
	default:
		count = g.between(10, 14)
	}
	if g.long > 0 {
		// Drawn above all the same, so the stream does not depend on it.
		count = g.long
	}
	days := g.sessionDays(count)
	finalState := "active"
	switch {
	case !g.responder:
		finalState = "stopped"
	case g.chance(0.25):
		finalState = "completed"
	}
	st := sessionState{
		ivMgKg:   0.5,
		imMgKg:   0.5,
		lozMg:    100,
		dissBase: g.between(12, 38),
	}
	if g.protocol == protoSpr && g.chance(0.6) {
		st.sprEscalateAt = g.between(2, 4)
	}
	out := make([]*clinic.Session, 0, count)
	lastDone := days[0]
	for k, day := range days {
		s := &clinic.Session{
			Header:        clinic.Header{Kind: clinic.KindSession, ID: fmt.Sprintf("ses-%s-%02d", g.id, k+1)},
			PatientID:     g.patientID,
			CourseID:      g.courseID,
			LocationID:    locInfusion,
			ClinicianID:   pracRN1,
			SessionNumber: k + 1,
		}
		if g.rng.IntN(2) == 1 {
			s.ClinicianID = pracRN2
		}
		if g.protocol == protoSpr {
			s.LocationID = locSpravato
		}
		sched := day.Add(time.Duration(g.between(16, 29)*30) * time.Minute) // 08:00-14:30
		s.ScheduledStart = dt(sched)
		status := clinic.SessionCompleted
		switch r := g.rng.Float64(); {
		case k == 0:
		case k == count-1 && finalState == "active":
			status = clinic.SessionScheduled
		case r < 0.03:
			status = clinic.SessionCancelled
			s.StatusReason = g.pick([]string{"patient cancelled: illness", "patient cancelled: transportation", "rescheduled by clinic"})
		case r < 0.05:
			status = clinic.SessionNoShow
			s.StatusReason = "patient did not arrive"
		case r < 0.08 && (g.protocol == protoIV || g.protocol == protoSpr):
			status = clinic.SessionStoppedEarly
		}
		s.Status = status
		if status == clinic.SessionCompleted || status == clinic.SessionStoppedEarly {
			switch g.protocol {
			case protoIV:
				g.ivSession(s, sched, &st)
			case protoSpr:
				g.sprSession(s, sched, &st)
			case protoIM:
				g.imSession(s, sched, &st)
			default:
				g.lozengeSession(s, sched, &st)
			}
			st.done++
			lastDone = day
			assessCausality(s)
		}
		out = append(out, s)
	}
	c.Status = finalState
	if g.responder && count > inductionSessions[g.protocol] {
		c.Phase = "maintenance"
	}
	if finalState != "active" {
		c.End = date(lastDone)
	}
	return out
}

// causalities is the clinician's causality assessment of each effect: the
// known effects of ketamine and esketamine (their labels) are probable, the
// others possible.
var causalities = map[string]string{
	"dissociation": "probable", "hypertension": "probable", "sedation": "probable", "nausea": "probable",
	"vomiting": "probable", "respiratory-depression": "probable", "dizziness": "possible",
	"headache": "possible", "anxiety": "possible", "other": "possible",
}

// assessCausality records the causality of every adverse effect of s.
func assessCausality(s *clinic.Session) {
	for i := range s.AdverseEffects {
		s.AdverseEffects[i].Causality = causalities[s.AdverseEffects[i].Effect]
	}
}

// sessionState carries a course's progress from session to session.
type sessionState struct {
	done          int // completed or stopped-early sessions so far
	ivMgKg        float64
	imMgKg        float64
	lozMg         float64
	sprEscalateAt int // session number from which 84 mg is given (0: never)
	dissBase      int // CADSS at the first dose
}

// score follows a scale from baseline down by the patient's improvement,
// approached over the first sessions, with noise.
func (g *patientGen) score(baseline, done, maxTotal int) int {
	if done == 0 {
		return clamp(baseline, 0, maxTotal)
	}
	frac := g.improvement * (1 - math.Exp(-float64(done)/2.5))
	noise := float64(baseline) * 0.08 * (g.rng.Float64()*2 - 1)
	return clamp(int(math.Round(float64(baseline)*(1-frac)+noise)), 0, maxTotal)
}

// items spreads total over n items of 0..itemMax.
func (g *patientGen) items(total, n, itemMax int) []int {
	out := make([]int, n)
	total = min(total, n*itemMax)
	for total > 0 {
		k := g.rng.IntN(n)
		if out[k] < itemMax {
			out[k]++
			total--
		}
	}
	return out
}

// preDose adds the pre-dose scales at t.
func (g *patientGen) preDose(s *clinic.Session, t time.Time, done int) {
	timing := "pre-dose"
	if done == 0 {
		timing = "baseline"
	}
	at := dt(t)
	phq := g.score(g.phqBaseline, done, 27)
	s.Assessments = append(s.Assessments, clinic.Assessment{Instrument: clinic.InstrumentPHQ9, Time: at, Timing: timing,
		Items: g.items(phq, 9, 3), Total: i(phq), Difficulty: i(clamp(phq/7, 0, 3))})
	if g.condition == "gad" || done == 0 || g.chance(0.25) {
		gad := g.score(g.gadBaseline, done, 21)
		s.Assessments = append(s.Assessments, clinic.Assessment{Instrument: clinic.InstrumentGAD7, Time: at, Timing: timing,
			Items: g.items(gad, 7, 3), Total: i(gad)})
	}
	if g.condition == "ptsd" && done%3 == 0 {
		pcl := g.score(g.pclBaseline, done, 80)
		s.Assessments = append(s.Assessments, clinic.Assessment{Instrument: clinic.InstrumentPCL5, Time: at, Timing: timing,
			Items: g.items(pcl, 20, 4), Total: i(pcl)})
	}
	if g.madrsBaseline > 0 && done%6 == 0 {
		m := g.score(g.madrsBaseline, done, 60)
		a := clinic.Assessment{Instrument: clinic.InstrumentMADRS, Time: at, Timing: timing, Total: i(m)}
		if g.chance(0.6) {
			a.Items = g.items(m, 10, 6)
		}
		s.Assessments = append(s.Assessments, a)
	}
	if done%4 == 0 {
		risk := "low"
		if r := g.rng.Float64(); done == 0 && r < 0.02 {
			risk = "high"
		} else if r < 0.15 && !(g.responder && done > 4) {
			risk = "moderate"
		}
		s.Assessments = append(s.Assessments, clinic.Assessment{Instrument: clinic.InstrumentCSSRS, Time: at, Timing: timing, RiskLevel: risk})
	}
}

// postDose adds CADSS (unless skipped) and MOAA/S at t and returns the CADSS
// total (0 when skipped) and MOAA/S.
func (g *patientGen) postDose(s *clinic.Session, t time.Time, st *sessionState, cadss bool) (int, int) {
	at := dt(t)
	diss := 0
	if cadss {
		diss = clamp(st.dissBase-st.done+g.between(-5, 6), 0, 70)
		a := clinic.Assessment{Instrument: clinic.InstrumentCADSS, Time: at, Timing: "post-dose", Total: i(diss)}
		if g.chance(0.4) {
			a.Items = g.items(diss, 23, 4)
		}
		s.Assessments = append(s.Assessments, a)
	}
	moaas := 5
	switch r := g.rng.Float64(); {
	case r < 0.08:
		moaas = 3
	case r < 0.45:
		moaas = 4
	}
	s.Assessments = append(s.Assessments, clinic.Assessment{Instrument: clinic.InstrumentMOAAS, Time: at, Timing: "post-dose", Total: i(moaas)})
	return diss, moaas
}

// vitals returns one set at t with the given rise over the patient's baseline.
func (g *patientGen) vitals(t time.Time, dSys, dDia, dHR int, full, temp bool) clinic.Vitals {
	sys := clamp(g.baseSys+dSys+g.between(-4, 4), 85, 230)
	dia := clamp(g.baseDia+dDia+g.between(-3, 3), 45, sys-20)
	v := clinic.Vitals{Time: dt(t), Systolic: i(sys), Diastolic: i(dia),
		HeartRate: i(clamp(g.baseHR+dHR+g.between(-4, 4), 45, 160)), SpO2: i(g.between(95, 99))}
	if full {
		v.RespRate = i(clamp(g.baseRR+g.between(-1, 1), 8, 28))
	}
	if temp {
		v.TempC = f(round1(36.4 + g.rng.Float64()*0.8))
	}
	return v
}

// rise is the blood-pressure response m minutes after dosing: up to peak by
// peakAt, held while the drug runs (until holdUntil), then easing off.
func rise(peak, m, peakAt, holdUntil float64) int {
	switch {
	case m <= 0:
		return 0
	case m < peakAt:
		return int(math.Round(peak * m / peakAt))
	case m <= holdUntil:
		return int(math.Round(peak))
	default:
		return int(math.Round(peak * math.Exp(-(m-holdUntil)/15)))
	}
}

// hypertension adds an adverse effect when a vitals set from index from on
// reaches 160/100, resolved at the first later set below 150/95.
func (g *patientGen) hypertension(s *clinic.Session, from int, action string) {
	for k := from; k < len(s.Vitals); k++ {
		v := s.Vitals[k]
		if *v.Systolic < 160 && *v.Diastolic < 100 {
			continue
		}
		ae := clinic.AdverseEffect{Effect: "hypertension", Severity: "moderate", Action: action, Onset: v.Time}
		for _, w := range s.Vitals[k:] {
			if *w.Systolic >= 180 {
				ae.Severity = "severe"
			}
		}
		for _, w := range s.Vitals[k+1:] {
			if *w.Systolic < 150 && *w.Diastolic < 95 {
				ae.Resolved = w.Time
				break
			}
		}
		s.AdverseEffects = append(s.AdverseEffects, ae)
		return
	}
}

// gi adds nausea or vomiting sometimes, between from and to.
func (g *patientGen) gi(s *clinic.Session, from time.Time, within int) {
	switch r := g.rng.Float64(); {
	case r < 0.015:
		on := from.Add(time.Duration(g.between(5, within)) * time.Minute)
		s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: "vomiting", Severity: "moderate",
			Action: "medication-given", Text: "ondansetron 4 mg ODT", Onset: dt(on), Resolved: dt(on.Add(time.Duration(g.between(10, 25)) * time.Minute))})
	case r < 0.10:
		on := from.Add(time.Duration(g.between(5, within)) * time.Minute)
		ae := clinic.AdverseEffect{Effect: "nausea", Severity: "mild", Action: "none", Onset: dt(on),
			Resolved: dt(on.Add(time.Duration(g.between(10, 30)) * time.Minute))}
		if g.chance(0.5) {
			ae.Action, ae.Text = "medication-given", "ondansetron 4 mg ODT"
		}
		s.AdverseEffects = append(s.AdverseEffects, ae)
	}
}

func (g *patientGen) weigh(s *clinic.Session, t time.Time) float64 {
	w := round1(g.weightKg + g.rng.NormFloat64()*0.5)
	s.WeightKg, s.WeightTime = f(w), dt(t)
	return w
}

func (g *patientGen) performer() string {
	switch r := g.rng.Float64(); {
	case r < 0.2:
		return pracCRNA
	case r < 0.6:
		return pracRN1
	}
	return pracRN2
}

func ketamineLot(t time.Time, n int) string {
	return fmt.Sprintf("KT%02d%c%03d", t.Year()%100, 'A'+rune(t.Month()-1), n)
}

// ivSession: 0.5 mg/kg over 40 min (titrated for slow responders), vitals
// every 10 (sometimes 15) minutes from pre-dose to discharge.
func (g *patientGen) ivSession(s *clinic.Session, sched time.Time, st *sessionState) {
	if !g.responder && (st.done == 3 || st.done == 5) {
		st.ivMgKg = math.Min(st.ivMgKg+0.125, 0.75)
	}
	actual := sched.Add(time.Duration(g.between(-5, 12)) * time.Minute)
	s.ActualStart = dt(actual)
	weight := g.weigh(s, actual.Add(3*time.Minute))
	g.preDose(s, actual.Add(2*time.Minute), st.done)
	infStart := actual.Add(time.Duration(g.between(12, 18)) * time.Minute)
	infMin := 40
	if g.chance(0.2) {
		infMin = g.between(41, 45)
	}
	mgkg := st.ivMgKg
	dose := round1(mgkg * weight)
	rate := round1(dose * 60 / float64(infMin))
	given := infMin
	stopped := s.Status == clinic.SessionStoppedEarly
	if stopped {
		given = g.between(12, 25)
		dose = round1(rate * float64(given) / 60)
		mgkg = math.Round(dose/weight*1000) / 1000
		s.StatusReason = "infusion stopped early for an adverse effect"
	}
	infEnd := infStart.Add(time.Duration(given) * time.Minute)
	s.Administrations = []clinic.Administration{{
		Drug: "ketamine", DoseMg: dose, MgPerKg: f(mgkg), Route: "iv",
		Start: dt(infStart), End: dt(infEnd), RateMgPerHour: f(rate),
		LotNumber: ketamineLot(infStart, g.n%997), PerformerID: g.performer(),
	}}
	discharge := infEnd.Add(time.Duration(g.between(30, 45)) * time.Minute)
	if stopped {
		discharge = infEnd.Add(time.Duration(g.between(40, 60)) * time.Minute)
	}
	peak := float64(g.between(8, 22))
	if g.chance(0.05) {
		peak = float64(g.between(32, 50))
	}
	step := 10
	if g.chance(0.2) {
		step = 15
	}
	s.Vitals = append(s.Vitals, g.vitals(infStart.Add(-10*time.Minute), 0, 0, 0, true, true))
	for t := infStart; !t.After(discharge.Add(-2 * time.Minute)); t = t.Add(time.Duration(step) * time.Minute) {
		m := t.Sub(infStart).Minutes()
		r := rise(peak, m, 28, float64(given))
		s.Vitals = append(s.Vitals, g.vitals(t, r, r*6/10, r/2, true, false))
	}
	s.Vitals = append(s.Vitals, g.vitals(discharge.Add(-2*time.Minute), 0, 0, 0, true, false))
	g.hypertension(s, 1, "infusion-slowed")
	if stopped {
		effect := g.pick([]string{"anxiety", "dissociation", "vomiting"})
		s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: effect, Severity: "severe", Action: "infusion-stopped",
			Onset: dt(infEnd.Add(-2 * time.Minute)), Resolved: dt(infEnd.Add(time.Duration(g.between(15, 35)) * time.Minute))})
	} else {
		g.gi(s, infStart, 35)
	}
	diss, _ := g.postDose(s, infEnd.Add(5*time.Minute), st, true)
	if diss > 35 && !stopped {
		s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: "dissociation", Severity: "moderate", Action: "observed",
			Onset: dt(infStart.Add(20 * time.Minute)), Resolved: dt(infEnd.Add(15 * time.Minute))})
	}
	s.ActualEnd, s.DischargeTime = dt(discharge), dt(discharge)
}

// sprSession: Spravato 56 or 84 mg (2 or 3 devices, 5 min apart), BP before,
// about 40 min after and at discharge, at least 2 h of monitoring, REMS form.
func (g *patientGen) sprSession(s *clinic.Session, sched time.Time, st *sessionState) {
	actual := sched.Add(time.Duration(g.between(-5, 10)) * time.Minute)
	s.ActualStart = dt(actual)
	if st.done == 0 {
		g.weigh(s, actual.Add(2*time.Minute))
	}
	g.preDose(s, actual.Add(2*time.Minute), st.done)
	pre := g.vitals(actual.Add(5*time.Minute), 0, 0, 0, false, st.done == 0)
	s.Vitals = append(s.Vitals, pre)
	if st.sprEscalateAt > 0 && s.SessionNumber >= st.sprEscalateAt {
		g.sprMg = 84
	}
	devices := int(g.sprMg / 28)
	kitNDC := "50458-028-02"
	if devices == 3 {
		kitNDC = "50458-028-03"
	}
	stopped := s.Status == clinic.SessionStoppedEarly
	if stopped {
		devices = 1
		s.StatusReason = "remaining devices not given for an adverse effect"
	}
	first := actual.Add(time.Duration(g.between(10, 15)) * time.Minute)
	last := first.Add(time.Duration(5*(devices-1)) * time.Minute)
	s.Administrations = []clinic.Administration{{
		Drug: "esketamine", DoseMg: float64(devices) * 28, Route: "intranasal", Devices: devices, NDC: kitNDC,
		LotNumber: fmt.Sprintf("ESK%02d%c%03d", first.Year()%100, 'A'+rune(first.Month()-1), g.n%991),
		Start:     dt(first), End: dt(last), PerformerID: s.ClinicianID,
	}}
	peak := float64(g.between(8, 24))
	if g.chance(0.06) {
		peak = float64(g.between(32, 48))
	}
	post := first.Add(40 * time.Minute)
	r := rise(peak, 40, 40, 40)
	s.Vitals = append(s.Vitals, g.vitals(post, r, r*6/10, r/3, false, false))
	if *s.Vitals[1].Systolic >= 150 {
		r := rise(peak, 90, 40, 40)
		s.Vitals = append(s.Vitals, g.vitals(first.Add(90*time.Minute), r, r*6/10, 0, false, false))
	}
	discharge := first.Add(time.Duration(g.between(120, 140)) * time.Minute)
	s.Vitals = append(s.Vitals, g.vitals(discharge.Add(-5*time.Minute), 2, 1, 0, false, false))
	g.hypertension(s, 1, "observed")
	diss, moaas := g.postDose(s, post, st, true)
	if stopped {
		effect := g.pick([]string{"vomiting", "dissociation"})
		s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: effect, Severity: "severe", Action: "observed",
			Onset: dt(first.Add(3 * time.Minute)), Resolved: dt(first.Add(time.Duration(g.between(40, 90)) * time.Minute))})
	} else {
		g.gi(s, first, 45)
		if diss > 35 {
			s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: "dissociation", Severity: "moderate", Action: "observed",
				Onset: dt(first.Add(10 * time.Minute)), Resolved: dt(first.Add(70 * time.Minute))})
		}
		if moaas <= 3 {
			s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: "sedation", Severity: "mild", Action: "observed",
				Onset: dt(first.Add(25 * time.Minute)), Resolved: dt(first.Add(75 * time.Minute))})
		}
		if g.chance(0.08) {
			s.AdverseEffects = append(s.AdverseEffects, clinic.AdverseEffect{Effect: "dizziness", Severity: "mild", Action: "none",
				Onset: dt(first.Add(15 * time.Minute)), Resolved: dt(first.Add(60 * time.Minute))})
		}
	}
	total := int(discharge.Sub(first).Minutes())
	s.REMS = &clinic.REMSMonitoring{
		FirstTreatment: s.SessionNumber == 1, Enrolled: true, ConcomitantMedications: g.concomitant,
		MinutesToReady: g.between(60, min(115, total)), TotalMonitoringMinutes: total,
		VitalsAcceptableBefore:  *pre.Systolic <= 140 && *pre.Diastolic <= 90,
		VitalsAcceptableAtLeave: true,
	}
	s.ActualEnd, s.DischargeTime = dt(discharge), dt(discharge)
}

// imSession: one IM injection (0.5, titrated to 0.75 mg/kg), vitals every 15
// minutes for about an hour.
func (g *patientGen) imSession(s *clinic.Session, sched time.Time, st *sessionState) {
	if !g.responder && st.done == 3 {
		st.imMgKg = 0.75
	}
	actual := sched.Add(time.Duration(g.between(-5, 12)) * time.Minute)
	s.ActualStart = dt(actual)
	weight := g.weigh(s, actual.Add(3*time.Minute))
	g.preDose(s, actual.Add(2*time.Minute), st.done)
	doseAt := actual.Add(time.Duration(g.between(12, 18)) * time.Minute)
	dose := round1(st.imMgKg * weight)
	s.Administrations = []clinic.Administration{{
		Drug: "ketamine", DoseMg: dose, MgPerKg: f(st.imMgKg), Route: "im", Start: dt(doseAt),
		LotNumber: ketamineLot(doseAt, g.n%997), PerformerID: g.performer(),
	}}
	discharge := doseAt.Add(time.Duration(g.between(55, 75)) * time.Minute)
	peak := float64(g.between(8, 20))
	s.Vitals = append(s.Vitals, g.vitals(doseAt.Add(-8*time.Minute), 0, 0, 0, true, st.done == 0))
	for t := doseAt.Add(15 * time.Minute); !t.After(discharge.Add(-2 * time.Minute)); t = t.Add(15 * time.Minute) {
		r := rise(peak, t.Sub(doseAt).Minutes(), 15, 25)
		s.Vitals = append(s.Vitals, g.vitals(t, r, r*6/10, r/2, true, false))
	}
	g.hypertension(s, 1, "observed")
	g.gi(s, doseAt, 30)
	g.postDose(s, doseAt.Add(30*time.Minute), st, true)
	s.ActualEnd, s.DischargeTime = dt(discharge), dt(discharge)
}

// lozengeSession: a supervised sublingual lozenge (100 mg, titrated to 200),
// vitals every 15 minutes for 75-90 minutes.
func (g *patientGen) lozengeSession(s *clinic.Session, sched time.Time, st *sessionState) {
	if !g.responder && (st.done == 3 || st.done == 6) {
		st.lozMg = math.Min(st.lozMg+50, 200)
	}
	actual := sched.Add(time.Duration(g.between(-5, 12)) * time.Minute)
	s.ActualStart = dt(actual)
	g.preDose(s, actual.Add(2*time.Minute), st.done)
	doseAt := actual.Add(time.Duration(g.between(8, 15)) * time.Minute)
	s.Administrations = []clinic.Administration{{
		Drug: "ketamine", DoseMg: st.lozMg, Route: "sublingual", Start: dt(doseAt), End: dt(doseAt.Add(15 * time.Minute)),
		LotNumber: fmt.Sprintf("KL%02d%c%03d", doseAt.Year()%100, 'A'+rune(doseAt.Month()-1), g.n%983), PerformerID: s.ClinicianID,
	}}
	discharge := doseAt.Add(time.Duration(g.between(75, 95)) * time.Minute)
	peak := float64(g.between(4, 14))
	s.Vitals = append(s.Vitals, g.vitals(doseAt.Add(-5*time.Minute), 0, 0, 0, true, st.done == 0))
	for t := doseAt.Add(15 * time.Minute); !t.After(discharge.Add(-2 * time.Minute)); t = t.Add(15 * time.Minute) {
		r := rise(peak, t.Sub(doseAt).Minutes(), 30, 45)
		s.Vitals = append(s.Vitals, g.vitals(t, r, r*6/10, r/2, true, false))
	}
	g.hypertension(s, 1, "observed")
	g.gi(s, doseAt, 40)
	g.postDose(s, doseAt.Add(45*time.Minute), st, false)
	s.ActualEnd, s.DischargeTime = dt(discharge), dt(discharge)
}
