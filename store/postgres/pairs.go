package postgres

import (
	"slices"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/internal/sqlcore"
)

// One reference row for patient and subject (docs/design/security.md
// PERF-PG-8, migration 0018). Almost every clinical resource names its
// patient twice: a `patient` reference row and a `subject` reference row
// with the same target (82,775 of 88,263 resources of the bench's 100
// patients; 19 % of idx_ref's rows). Such a pair is stored as one row of
// the parameter patientSubject, which a search for either parameter matches
// (paramKey resolves patient and subject to both of their pids,
// sqlcore.ParamKeys), so every search, :missing, :not, sort and _include
// answers as before: the rows of patient are its own and the combined
// ones, and so are subject's. A patient or subject row without the other
// (a subject that is a Group, a patient row alone) keeps its own
// parameter. SQLite keeps both rows.
const (
	patientParam   = "patient"
	subjectParam   = "subject"
	patientSubject = "patient|subject" // no search parameter's name has a "|"
)

// refPairs are one resource's patient and subject reference targets.
type refPairs struct{ patient, subject []string }

// scan reads the patient and subject reference targets of rows.
func (p *refPairs) scan(rows []store.IndexRow) {
	p.patient, p.subject = p.patient[:0], p.subject[:0]
	for i := range rows {
		if rows[i].Kind != store.KindReference {
			continue
		}
		switch rows[i].Param {
		case patientParam:
			p.patient = append(p.patient, rows[i].Value)
		case subjectParam:
			p.subject = append(p.subject, rows[i].Value)
		}
	}
}

// param is the parameter an index row of the scanned resource is stored
// under: patientSubject for a patient row whose target a subject row names
// too, "" (not stored) for that subject row, which the combined row stands
// for; else its own.
func (p *refPairs) param(row *store.IndexRow) string {
	if row.Kind == store.KindReference && len(p.patient) > 0 && len(p.subject) > 0 {
		switch row.Param {
		case patientParam:
			if slices.Contains(p.subject, row.Value) {
				return patientSubject
			}
		case subjectParam:
			if slices.Contains(p.patient, row.Value) {
				return ""
			}
		}
	}
	return row.Param
}

// pairedParam reports whether name's rows may be stored combined.
func pairedParam(name string) bool { return name == patientParam || name == subjectParam }

// paramKeys resolves name as sqlcore.ParamKey does, the combined rows
// included for patient and subject: ok is false only when neither name nor
// the combined parameter was ever interned.
func (s *Store) paramKeys(name string, find func(string) (int32, bool, error)) (any, bool, error) {
	pid, ok, err := find(name)
	if err != nil || !pairedParam(name) {
		if !ok {
			return nil, false, err
		}
		return pid, true, err
	}
	both, bok, err := find(patientSubject)
	if err != nil {
		return nil, false, err
	}
	switch {
	case ok && bok:
		return sqlcore.ParamKeys{pid, both}, true, nil
	case bok:
		return both, true, nil
	case ok:
		return pid, true, nil
	}
	return nil, false, nil
}
