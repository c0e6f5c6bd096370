package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestApplyBufferedRows covers the buffered index and history rows within
// one Apply: a resource created and then replaced or deleted by a later
// record of the same batch keeps only its final index rows and every
// version, whatever the flush threshold (mid-record flushes included), on
// the fast path and on the savepoint-per-record rerun.
func TestApplyBufferedRows(t *testing.T) {
	errDisk := errors.New("disk on fire")
	for _, tc := range []struct {
		name    string
		flushAt int
		fail    bool // force the savepoint rerun through a failing record
	}{
		{"one flush per batch", 1 << 18, false},
		{"flush every row", 1, false},
		{"flush every 3 rows", 3, false},
		{"savepoint rerun", 1 << 18, true},
		{"savepoint rerun, flush every 2 rows", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			defer func(n int) { flushAt = n }(flushAt)
			flushAt = tc.flushAt
			if tc.fail {
				failWriteOf(t, "bad", errDisk)
			}
			s, err := Open(ctx, filepath.Join(t.TempDir(), "buf.db"), storetest.NewFakeClock(storetest.T0))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			recs := []store.RecordWrite{
				storetest.Rec("session", "a", "h1",
					storetest.Res("Observation", "o1", "p1", `,"status":"final"`, storetest.Token("code", "s", "c1"), storetest.Ref("subject", "Patient/p1")),
					storetest.Res("Observation", "o2", "p1", `,"status":"final"`, storetest.Token("code", "s", "c1"))),
				// Another record takes o1 over with a new body and code.
				storetest.Rec("session", "b", "h1",
					storetest.Res("Observation", "o1", "p2", `,"status":"amended"`, storetest.Token("code", "s", "c2"), storetest.Ref("subject", "Patient/p2"))),
				// Record a again, no longer producing o2: o2 is deleted.
				storetest.Rec("session", "a", "h2",
					storetest.Res("Observation", "o3", "p1", `,"status":"final"`, storetest.Token("code", "s", "c1"))),
			}
			if tc.fail {
				recs = append(recs, storetest.Rec("session", "z", "h1",
					storetest.Res("Observation", "o4", "p1", "", storetest.Token("code", "s", "c1")),
					storetest.Res("Observation", "bad", "p1", "", storetest.Token("code", "s", "c1"))))
			}
			res, err := s.Apply(ctx, recs)
			var be *store.BatchError
			switch {
			case tc.fail && (!errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 3):
				t.Fatalf("Apply err = %v, want a BatchError for record 3", err)
			case !tc.fail && err != nil:
				t.Fatal(err)
			}
			want := []store.Outcome{store.Created, store.Created, store.Updated}
			for i, w := range want {
				if res[i].Outcome != w {
					t.Errorf("record %d outcome = %v, want %v", i, res[i].Outcome, w)
				}
			}
			search := func(param string, kind store.IndexKind, v store.Value) []string {
				t.Helper()
				got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: param, Kind: kind, Values: []store.Value{v}}}})
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range got.Resources {
					ids = append(ids, r.ID)
				}
				return ids
			}
			for _, c := range []struct {
				param string
				kind  store.IndexKind
				v     store.Value
				want  []string
			}{
				{"code", store.KindToken, store.Value{System: "s", Code: "c1"}, []string{"o3"}},
				{"code", store.KindToken, store.Value{System: "s", Code: "c2"}, []string{"o1"}},
				{"subject", store.KindReference, store.Value{Str: "Patient/p1"}, nil},
				{"subject", store.KindReference, store.Value{Str: "Patient/p2"}, []string{"o1"}},
			} {
				if got := search(c.param, c.kind, c.v); !slices.Equal(got, c.want) {
					t.Errorf("%s=%+v: got %v, want %v", c.param, c.v, got, c.want)
				}
			}
			for _, c := range []struct {
				id       string
				versions int
			}{{"o1", 2}, {"o2", 2}, {"o3", 1}} {
				h, total, err := s.History(ctx, "Observation", c.id, 0, 0)
				if err != nil {
					t.Fatalf("history %s: %v", c.id, err)
				}
				if len(h) != c.versions || total != c.versions {
					t.Errorf("history %s: %d versions (total %d), want %d", c.id, len(h), total, c.versions)
				}
			}
			if _, err := s.Read(ctx, "Observation", "o2"); !errors.Is(err, store.ErrGone) {
				t.Errorf("read o2: err = %v, want ErrGone", err)
			}
			if _, err := s.Read(ctx, "Observation", "o4"); tc.fail && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("read o4 of the failed record: err = %v, want ErrNotFound", err)
			}
		})
	}
}
