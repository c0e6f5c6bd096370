package sqlcore

import (
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// What a backend writing a run of records set-based (store/postgres's bulk
// path) needs of Record's decisions, taken one at a time: the same checks
// and stamping, against current rows the backend read for the whole run.

// Prepare checks every resource body of rec and stamps it as version 1 at
// now, as Record does before writing anything: the first failure is the
// record's.
func Prepare(rec *store.RecordWrite, now time.Time) ([]Prepared, error) {
	preps := make([]Prepared, len(rec.Resources))
	for i := range rec.Resources {
		if err := prepare(&rec.Resources[i], &preps[i], now); err != nil {
			return nil, err
		}
	}
	return preps, nil
}

// CheckExpect checks rec.Expect against current (the current rows of at
// least the expected keys), as Record does: the first that fails is a
// *store.PreconditionError.
func CheckExpect(rec *store.RecordWrite, current map[store.Key]Current) error {
	for _, e := range rec.Expect {
		var have int64
		if c, ok := current[e.Key]; ok && !c.Deleted {
			have = c.Version
		}
		if have != e.Version {
			return &store.PreconditionError{Key: e.Key, Want: e.Version, Have: have}
		}
	}
	return nil
}

// UnchangedResult is the result of a record whose hash matched, its
// resources' versions read from current.
func UnchangedResult(rec *store.RecordWrite, current map[store.Key]Current) store.WriteResult {
	res := store.WriteResult{Outcome: store.Unchanged, Resources: make([]store.ResourceResult, 0, len(rec.Resources))}
	for i := range rec.Resources {
		k := store.Key{Type: rec.Resources[i].Type, ID: rec.Resources[i].ID}
		res.Resources = append(res.Resources, store.ResourceResult{Type: k.Type, ID: k.ID, Version: current[k].Version, Outcome: store.Unchanged})
	}
	return res
}
