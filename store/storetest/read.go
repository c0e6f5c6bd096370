package storetest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

func testRead(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	clock := NewFakeClock(T0)
	s := newStore(t, clock)
	// Observation o1 gets versions 1..3; o2 exists; o3 is deleted.
	for v := 1; v <= 3; v++ {
		apply(t, s, Rec("session", "s1", "h"+strconv.Itoa(v),
			Res("Observation", "o1", "p1", `,"v":`+strconv.Itoa(v)),
			Res("Observation", "o2", "p1", ""),
			Res("Observation", "o3", "p1", "")))
		clock.Advance(time.Minute)
	}
	apply(t, s, Rec("session", "s1", "h4", Res("Observation", "o1", "p1", `,"v":3`), Res("Observation", "o2", "p1", "")))

	t.Run("not found", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"read unknown id", func() error { _, err := s.Read(ctx, "Observation", "nope"); return err }},
			{"read unknown type", func() error { _, err := s.Read(ctx, "Condition", "o1"); return err }},
			{"vread unknown version", func() error { _, err := s.VRead(ctx, "Observation", "o1", 4); return err }},
			{"vread version 0", func() error { _, err := s.VRead(ctx, "Observation", "o1", 0); return err }},
			{"vread unknown id", func() error { _, err := s.VRead(ctx, "Observation", "nope", 1); return err }},
			{"history unknown id", func() error { _, _, err := s.History(ctx, "Observation", "nope", 10, 0); return err }},
		} {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.call(), store.ErrNotFound) })
		}
	})

	t.Run("vread every version", func(t *testing.T) {
		for v := int64(1); v <= 3; v++ {
			r, err := s.VRead(ctx, "Observation", "o1", v)
			if err != nil {
				t.Fatalf("VRead %d: %v", v, err)
			}
			at := T0.Add(time.Duration(v-1) * time.Minute)
			want := stamped(t, "Observation", "o1", `,"v":`+strconv.FormatInt(v, 10), v, at)
			if string(r.Body) != string(want) || r.Version != v || !r.LastUpdated.Equal(at) || r.Patient != "p1" {
				t.Errorf("VRead %d = %+v %s, want body %s", v, r, r.Body, want)
			}
		}
	})

	t.Run("history pages", func(t *testing.T) {
		for _, tc := range []struct {
			name          string
			count, offset int
			want          []int64
		}{
			{"all", 0, 0, []int64{3, 2, 1}},
			{"first page", 2, 0, []int64{3, 2}},
			{"second page", 2, 2, []int64{1}},
			{"past the end", 2, 4, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h, total, err := s.History(ctx, "Observation", "o1", tc.count, tc.offset)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range h {
					got = append(got, strconv.FormatInt(r.Version, 10))
				}
				var want []string
				for _, v := range tc.want {
					want = append(want, strconv.FormatInt(v, 10))
				}
				wantStrings(t, "versions", got, want)
				if total != 3 {
					t.Errorf("total = %d, want 3", total)
				}
			})
		}
	})

	t.Run("history of a deleted resource", func(t *testing.T) {
		h, total, err := s.History(ctx, "Observation", "o3", 0, 0)
		if err != nil || total != 2 || len(h) != 2 || !h[0].Deleted || h[0].Version != 2 || len(h[0].Body) != 0 || h[1].Deleted {
			t.Errorf("History = %+v, %d, %v", h, total, err)
		}
	})

	t.Run("get many", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			keys []store.Key
			want []string
		}{
			{"order of keys", []store.Key{{Type: "Observation", ID: "o2"}, {Type: "Observation", ID: "o1"}}, []string{"Observation/o2", "Observation/o1"}},
			{"missing, deleted and duplicates skipped", []store.Key{{Type: "Observation", ID: "o1"}, {Type: "Observation", ID: "nope"}, {Type: "Observation", ID: "o3"}, {Type: "Observation", ID: "o1"}, {Type: "Patient", ID: "o2"}}, []string{"Observation/o1"}},
			{"none", nil, nil},
			{"more keys than one query asks for", manyKeys(), []string{"Observation/o2", "Observation/o1"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.GetMany(ctx, tc.keys)
				if err != nil {
					t.Fatal(err)
				}
				wantStrings(t, "keys", keys(got), tc.want)
				for _, r := range got {
					if r.Version == 0 || len(r.Body) == 0 || r.Patient != "p1" {
						t.Errorf("GetMany resource incomplete: %+v", r)
					}
				}
			})
		}
	})
}

// manyKeys is o2, 150 unknown Observations, then o1: more keys than a
// backend may put in one query.
func manyKeys() []store.Key {
	k := []store.Key{{Type: "Observation", ID: "o2"}}
	for i := range 150 {
		k = append(k, store.Key{Type: "Observation", ID: fmt.Sprintf("none-%d", i)})
	}
	return append(k, store.Key{Type: "Observation", ID: "o1"})
}
