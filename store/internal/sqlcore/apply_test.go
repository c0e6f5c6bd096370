package sqlcore

import (
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// versions records what Update and Delete write.
type versions struct {
	moved   [][2]int64 // rid, srid
	written []Version
	fail    error
}

func (w *versions) SetSource(rid, srid int64) error {
	w.moved = append(w.moved, [2]int64{rid, srid})
	return w.fail
}

func (w *versions) WriteVersion(v *Version) error {
	w.written = append(w.written, *v)
	return w.fail
}

func resource(id, rest string) store.ResourceWrite {
	return store.ResourceWrite{Type: "Observation", ID: id, Patient: "p1", Body: []byte(`{"id":"` + id + `","resourceType":"Observation"` + rest + `}`)}
}

func TestUpdate(t *testing.T) {
	now := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	rw := resource("o1", `,"status":"final"`)
	sum := sha256.Sum256(rw.Body)
	other := sha256.Sum256([]byte("other"))
	p := &Prepared{Sum: sum}
	for _, tc := range []struct {
		name    string
		cur     Current
		want    store.ResourceResult
		moved   [][2]int64
		version int64 // written, 0: none
	}{
		{"same body, same record", Current{RID: 4, Version: 2, Hash: sum[:], Src: 9}, store.ResourceResult{Version: 2, Outcome: store.Unchanged}, nil, 0},
		{"same body, other record: moves", Current{RID: 4, Version: 2, Hash: sum[:], Src: 8}, store.ResourceResult{Version: 2, Outcome: store.Unchanged}, [][2]int64{{4, 9}}, 0},
		{"changed body", Current{RID: 4, Version: 2, Hash: other[:], Src: 9}, store.ResourceResult{Version: 3, Outcome: store.Updated}, nil, 3},
		{"deleted, same body: created again", Current{RID: 4, Version: 5, Deleted: true, Src: 9}, store.ResourceResult{Version: 6, Outcome: store.Created}, nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &versions{}
			rr, err := Update(w, &rw, 3, p, tc.cur, 9, now)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Type, tc.want.ID = "Observation", "o1"
			if rr != tc.want {
				t.Errorf("result = %+v, want %+v", rr, tc.want)
			}
			if !reflect.DeepEqual(w.moved, tc.moved) {
				t.Errorf("moved = %v, want %v", w.moved, tc.moved)
			}
			if tc.version == 0 {
				if len(w.written) != 0 {
					t.Errorf("wrote %+v", w.written)
				}
				return
			}
			if len(w.written) != 1 {
				t.Fatalf("wrote %d versions, want 1", len(w.written))
			}
			v := w.written[0]
			if v.RID != 4 || v.Version != tc.version || v.Src != 9 || v.Deleted || v.Patient != "p1" || v.Index != 3 ||
				v.Resource != &rw || !reflect.DeepEqual(v.Hash, sum[:]) || !strings.Contains(string(v.Body), `"versionId":"`) {
				t.Errorf("version = %+v", v)
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		w := &versions{fail: errors.New("disk")}
		if _, err := Update(w, &rw, 0, p, Current{RID: 4, Version: 2, Hash: other[:]}, 9, now); err == nil {
			t.Error("no error")
		}
	})
}

func TestDelete(t *testing.T) {
	k := store.Key{Type: "Observation", ID: "o1"}
	for _, tc := range []struct {
		name  string
		cur   Current
		found bool
		done  bool
	}{
		{"last written by the record", Current{RID: 4, Version: 2, Src: 9, Patient: "p1"}, true, true},
		{"gone", Current{}, false, false},
		{"already deleted", Current{RID: 4, Version: 3, Deleted: true, Src: 9}, true, false},
		{"taken over by another record", Current{RID: 4, Version: 2, Src: 8}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &versions{}
			rr, done, err := Delete(w, k, tc.cur, tc.found, 9)
			if err != nil || done != tc.done {
				t.Fatalf("Delete = %v, %v; want done %v", done, err, tc.done)
			}
			if !done {
				if len(w.written) != 0 {
					t.Errorf("wrote %+v", w.written)
				}
				return
			}
			want := Version{RID: 4, Version: 3, Src: 9, Deleted: true, Patient: "p1"}
			if len(w.written) != 1 || !reflect.DeepEqual(w.written[0], want) {
				t.Errorf("wrote %+v, want %+v", w.written, want)
			}
			if rr != (store.ResourceResult{Type: k.Type, ID: k.ID, Version: 3, Outcome: store.Deleted}) {
				t.Errorf("result = %+v", rr)
			}
		})
	}
}

func TestSourceRowAndDropped(t *testing.T) {
	rec := store.RecordWrite{Kind: "session", ClinicID: "s1", Hash: "h2",
		Resources: []store.ResourceWrite{resource("o1", ""), {Type: "Encounter", ID: "e1"}}}
	res, keys, body := SourceRow(&rec, Source{})
	if res.Outcome != store.Created || keys != "Observation/o1\nEncounter/e1" || body == nil || len(body) != 0 {
		t.Errorf("SourceRow of a new record = %v, %q, %v", res.Outcome, keys, body)
	}
	src := Source{Found: true, ID: 7, Hash: "h1", Keys: "Observation/o1\nObservation/o2\nbroken\nCondition/c1"}
	if res, _, _ := SourceRow(&rec, src); res.Outcome != store.Updated {
		t.Errorf("SourceRow of a stored record: outcome %v", res.Outcome)
	}
	want := []store.Key{{Type: "Observation", ID: "o2"}, {Type: "Condition", ID: "c1"}}
	if got := Dropped(&rec, src); !reflect.DeepEqual(got, want) {
		t.Errorf("Dropped = %v, want %v", got, want)
	}
	if got := Dropped(&rec, Source{}); got != nil {
		t.Errorf("Dropped of a new record = %v", got)
	}
}

func TestRecords(t *testing.T) {
	recs := []store.RecordWrite{{ClinicID: "a"}, {ClinicID: "bad"}, {ClinicID: "c"}}
	errBad := errors.New("bad data")
	ok := func(rec *store.RecordWrite) (store.WriteResult, error) {
		if rec.ClinicID == "bad" {
			return store.WriteResult{}, errBad
		}
		return store.WriteResult{Outcome: store.Created}, nil
	}
	t.Run("a failing record is reported, the others go on", func(t *testing.T) {
		res, failed, err := Records(context.Background(), recs, ok)
		if err != nil || len(failed) != 1 || failed[0].Index != 1 || !errors.Is(failed[0].Err, errBad) {
			t.Fatalf("failed = %v, err = %v", failed, err)
		}
		if res[0].Outcome != store.Created || res[1].Outcome != store.Failed || res[2].Outcome != store.Created {
			t.Errorf("results = %+v", res)
		}
	})
	for _, stop := range []error{&Retry{errBad}, &Fatal{errBad}} {
		t.Run("stops on "+reflect.TypeOf(stop).String(), func(t *testing.T) {
			_, _, err := Records(context.Background(), recs, func(*store.RecordWrite) (store.WriteResult, error) { return store.WriteResult{}, stop })
			if err != stop {
				t.Errorf("err = %v, want %v", err, stop)
			}
		})
	}
	t.Run("stops when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		_, _, err := Records(ctx, recs, func(rec *store.RecordWrite) (store.WriteResult, error) {
			cancel()
			return ok(rec)
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestWithRetry(t *testing.T) {
	var runs []bool
	err := WithRetry(context.Background(), func(safe bool) error {
		runs = append(runs, safe)
		if !safe {
			return &Retry{errors.New("write failed")}
		}
		return nil
	})
	if err != nil || !reflect.DeepEqual(runs, []bool{false, true}) {
		t.Errorf("runs = %v, err = %v; want an unsafe then a safe run", runs, err)
	}
}
