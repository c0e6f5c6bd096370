// Package priorauth checks a course of ketamine-class treatment against a
// payer's prior-authorization criteria and builds the Da Vinci PAS 2.0.1
// request a payer's Claim/$submit takes.
//
// The criteria are data: each policy is a versioned JSON file under
// policies/ (docs/prior-auth.md "Criteria files"), embedded in the binary.
// A criterion names a rule, a small fixed set of evaluators over the
// patient's FHIR resources (Records), and the rule's parameters. Evaluation
// is pure and deterministic: no I/O and no clock; every answer is met,
// not-met or unknown, with the resources used as evidence. Where the records
// cannot show a criterion the answer is unknown, never met
// (docs/design/security.md PA-1).
package priorauth

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
)

// The rules a criterion may name.
const (
	RuleAgeMin                   = "age-min"
	RuleDiagnosis                = "diagnosis"
	RuleFailedTrials             = "failed-trials"
	RuleBaselineScore            = "baseline-score"
	RuleConcurrentAntidepressant = "concurrent-antidepressant"
	RuleREMS                     = "rems"
	RuleNoCondition              = "no-condition"
	RuleDosePlan                 = "dose-plan"
	RulePrescriberTaxonomy       = "prescriber-taxonomy"
	RuleResponse                 = "response"
	// RuleAttestation is a criterion the records cannot show (a PDMP check):
	// always unknown, for the clinic to attest to the payer.
	RuleAttestation = "attestation"
)

// Therapies a policy may cover.
const (
	TherapyEsketamine = "esketamine"
	TherapyKetamine   = "ketamine"
)

// Criterion is one payer criterion: a code, a human-readable text and how it
// is evaluated (Rule and the parameters that rule reads).
type Criterion struct {
	Code string `json:"code"`
	Text string `json:"text"`
	Rule string `json:"rule"`

	// age-min
	Years int `json:"years,omitempty"`
	// diagnosis, no-condition: ICD-10-CM codes or code prefixes ("F33"
	// matches F33.2; "I67.1" matches I67.1 only and its children).
	ICD10 []string `json:"icd10,omitempty"`
	// failed-trials
	Count                 int     `json:"count,omitempty"`
	MinWeeks              int     `json:"minWeeks,omitempty"`
	MaxImprovementPercent float64 `json:"maxImprovementPercent,omitempty"`
	// baseline-score
	WindowDays int `json:"windowDays,omitempty"`
	PHQ9Min    int `json:"phq9Min,omitempty"`
	MADRSMin   int `json:"madrsMin,omitempty"`
	// dose-plan
	AllowedMg   []float64 `json:"allowedMg,omitempty"`
	MaxWeeklyMg float64   `json:"maxWeeklyMg,omitempty"`
	MaxMgPerKg  float64   `json:"maxMgPerKg,omitempty"`
	// prescriber-taxonomy: NUCC provider taxonomy codes.
	Taxonomy []string `json:"taxonomy,omitempty"`
	// response
	MinReductionPercent float64 `json:"minReductionPercent,omitempty"`
	FromWeek            int     `json:"fromWeek,omitempty"`
	ToWeek              int     `json:"toWeek,omitempty"`
}

// Policy is one payer policy (or the typical criteria, without Payers) for
// one therapy.
type Policy struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Title   string `json:"title"`
	// Therapy is esketamine or ketamine.
	Therapy string `json:"therapy"`
	// Routes are the SNOMED CT routes of administration the policy covers
	// (the code of the order's dosage route); empty: every route. A course
	// given by another route is checked against no policy of this one: the
	// IV ketamine criteria say nothing of an oral or IM course.
	Routes []string `json:"routes,omitempty"`
	// Payers are the payer identifiers (the claims payer id or NAIC code on
	// the payer's Organization) the policy is for; empty: the default policy
	// of its therapy.
	Payers []string `json:"payers,omitempty"`
	// ApprovalDays is how long an approval typically lasts.
	ApprovalDays int `json:"approvalDays,omitempty"`
	// Criteria are checked for the first request; Renewal for a
	// reauthorization.
	Criteria []Criterion `json:"criteria"`
	Renewal  []Criterion `json:"renewal,omitempty"`
}

//go:embed policies/*.json
var policyFiles embed.FS

var builtin = mustLoad()

func mustLoad() []*Policy {
	ps, err := Load(policyFiles, "policies")
	if err != nil {
		panic(err)
	}
	return ps
}

// Policies returns the built-in policies, sorted by id. The slice and the
// policies are shared: do not modify them.
func Policies() []*Policy { return builtin }

// Load reads and checks every *.json policy file in dir of fsys.
func Load(fsys fs.FS, dir string) ([]*Policy, error) {
	names, err := fs.Glob(fsys, dir+"/*.json")
	if err != nil {
		return nil, err
	}
	var out []*Policy
	seen := map[string]bool{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		p, err := ParsePolicy(b)
		if err != nil {
			return nil, fmt.Errorf("priorauth: %s: %w", n, err)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("priorauth: %s: duplicate policy id %q", n, p.ID)
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ParsePolicy decodes one policy file strictly (unknown members are errors)
// and checks that every criterion has what its rule reads.
func ParsePolicy(b []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the policy")
	}
	if p.ID == "" || p.Version == "" || p.Title == "" {
		return nil, errors.New("id, version and title are required")
	}
	if p.Therapy != TherapyEsketamine && p.Therapy != TherapyKetamine {
		return nil, fmt.Errorf("therapy must be %s or %s", TherapyEsketamine, TherapyKetamine)
	}
	if len(p.Criteria) == 0 {
		return nil, errors.New("at least one criterion is required")
	}
	for _, set := range [][]Criterion{p.Criteria, p.Renewal} {
		codes := map[string]bool{}
		for i, c := range set {
			if c.Code == "" || c.Text == "" {
				return nil, fmt.Errorf("criterion %d: code and text are required", i)
			}
			if codes[c.Code] {
				return nil, fmt.Errorf("criterion %q: duplicate code", c.Code)
			}
			codes[c.Code] = true
			if err := c.check(); err != nil {
				return nil, fmt.Errorf("criterion %q: %w", c.Code, err)
			}
		}
	}
	return &p, nil
}

func (c Criterion) check() error {
	switch c.Rule {
	case RuleAgeMin:
		if c.Years <= 0 {
			return errors.New("age-min needs years")
		}
	case RuleDiagnosis, RuleNoCondition:
		if len(c.ICD10) == 0 {
			return errors.New(c.Rule + " needs icd10")
		}
	case RuleFailedTrials:
		if c.Count <= 0 || c.MinWeeks <= 0 || c.MaxImprovementPercent <= 0 {
			return errors.New("failed-trials needs count, minWeeks and maxImprovementPercent")
		}
	case RuleBaselineScore:
		if c.WindowDays <= 0 || (c.PHQ9Min <= 0 && c.MADRSMin <= 0) {
			return errors.New("baseline-score needs windowDays and phq9Min or madrsMin")
		}
	case RuleDosePlan:
		if len(c.AllowedMg) == 0 && c.MaxWeeklyMg <= 0 && c.MaxMgPerKg <= 0 {
			return errors.New("dose-plan needs allowedMg, maxWeeklyMg or maxMgPerKg")
		}
	case RulePrescriberTaxonomy:
		if len(c.Taxonomy) == 0 {
			return errors.New("prescriber-taxonomy needs taxonomy")
		}
	case RuleResponse:
		if c.MinReductionPercent <= 0 || c.FromWeek <= 0 || c.ToWeek < c.FromWeek {
			return errors.New("response needs minReductionPercent and fromWeek <= toWeek")
		}
	case RuleConcurrentAntidepressant, RuleREMS, RuleAttestation:
	default:
		return fmt.Errorf("unknown rule %q", c.Rule)
	}
	return nil
}

// Select picks the policy for a therapy given by route (a SNOMED CT code,
// "" when the order names none) and the payer's identifiers: among the
// therapy's policies that cover the route, the one naming one of the
// identifiers, else the default (no Payers). nil when there is none.
func Select(policies []*Policy, therapy, route string, payerIDs []string) *Policy {
	var def *Policy
	for _, p := range policies {
		if p.Therapy != therapy || (len(p.Routes) > 0 && !slices.Contains(p.Routes, route)) {
			continue
		}
		if len(p.Payers) == 0 {
			if def == nil {
				def = p
			}
			continue
		}
		for _, id := range payerIDs {
			if slices.Contains(p.Payers, strings.TrimSpace(id)) {
				return p
			}
		}
	}
	return def
}

// Find returns the policy with id, or nil.
func Find(policies []*Policy, id string) *Policy {
	for _, p := range policies {
		if p.ID == id {
			return p
		}
	}
	return nil
}
