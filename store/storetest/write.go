package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

func testWrite(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	patient := func(rest string) store.ResourceWrite {
		return Res("Patient", "p1", "p1", rest, Str("name", "Ada"))
	}
	obs := func(rest, code string) store.ResourceWrite {
		return Res("Observation", "o1", "p1", rest, Token("code", "http://loinc.org", code), Ref("patient", "Patient/p1"))
	}

	t.Run("create stamps meta", func(t *testing.T) {
		clock := NewFakeClock(T0.Add(123456789 * time.Nanosecond))
		s := newStore(t, clock)
		withMeta := Res("Patient", "p2", "p2", `,"active":true`)
		withMeta.Body = []byte(`{"id":"p2","meta":{"profile":["http://example.org/p"]},"resourceType":"Patient","active":true}`)
		res := apply(t, s, Rec("patient", "c1", "h1", patient(`,"active":true`), obs(`,"status":"final"`, "1")), Rec("patient", "c2", "h1", withMeta))
		wantResult(t, "record 0", res[0], "created Patient/p1@1:created Observation/o1@1:created")
		wantResult(t, "record 1", res[1], "created Patient/p2@1:created")

		at := T0.Add(123 * time.Millisecond)
		r, err := s.Read(ctx, "Patient", "p1")
		if err != nil {
			t.Fatal(err)
		}
		want := `{"id":"p1","meta":{"versionId":"1","lastUpdated":"2024-03-01T10:00:00.123Z"},"resourceType":"Patient","active":true}`
		if string(r.Body) != want {
			t.Errorf("body = %s, want %s", r.Body, want)
		}
		if r.Type != "Patient" || r.ID != "p1" || r.Version != 1 || !r.LastUpdated.Equal(at) || r.Deleted || r.Patient != "p1" {
			t.Errorf("resource = %+v", r)
		}
		r, err = s.Read(ctx, "Patient", "p2")
		if err != nil {
			t.Fatal(err)
		}
		want = `{"id":"p2","meta":{"versionId":"1","lastUpdated":"2024-03-01T10:00:00.123Z","profile":["http://example.org/p"]},"resourceType":"Patient","active":true}`
		if string(r.Body) != want {
			t.Errorf("body with meta = %s, want %s", r.Body, want)
		}
	})

	t.Run("same hash is unchanged", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "c1", "h1", patient(""), obs("", "1")))
		clock.Advance(time.Minute)
		// The bodies differ, but the hash says the record did not change.
		res := apply(t, s, Rec("patient", "c1", "h1", patient(`,"active":false`), obs("", "2")))
		wantResult(t, "re-apply", res[0], "unchanged Patient/p1@1:unchanged Observation/o1@1:unchanged")
		h, total, err := s.History(ctx, "Patient", "p1", 0, 0)
		if err != nil || total != 1 || len(h) != 1 {
			t.Fatalf("History = %d versions, total %d, err %v", len(h), total, err)
		}
		src, err := s.SourceRecords(ctx, []store.RecordKey{{Kind: "patient", ClinicID: "c1"}})
		if err != nil || !bytes.Contains(src[store.RecordKey{Kind: "patient", ClinicID: "c1"}], []byte(`"hash":"h1"`)) {
			t.Errorf("source = %s, %v", src, err)
		}
	})

	t.Run("same bodies new hash", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "c1", "h1", patient(""), obs("", "1")))
		clock.Advance(time.Minute)
		res := apply(t, s, Rec("patient", "c1", "h2", patient(""), obs("", "1")))
		wantResult(t, "re-apply", res[0], "updated Patient/p1@1:unchanged Observation/o1@1:unchanged")
		r, err := s.Read(ctx, "Patient", "p1")
		if err != nil || r.Version != 1 || !r.LastUpdated.Equal(T0) {
			t.Errorf("Read = v%d at %v, %v; want v1 at T0", r.Version, r.LastUpdated, err)
		}
		src, err := s.SourceRecords(ctx, []store.RecordKey{{Kind: "patient", ClinicID: "c1"}})
		if err != nil || !bytes.Contains(src[store.RecordKey{Kind: "patient", ClinicID: "c1"}], []byte(`"hash":"h2"`)) {
			t.Errorf("source not updated: %s, %v", src, err)
		}
	})

	t.Run("update makes a version and replaces index rows", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "c1", "h1", patient(""), obs(`,"status":"final"`, "1")))
		t1 := T0.Add(time.Minute)
		clock.Set(t1)
		res := apply(t, s, Rec("patient", "c1", "h2", patient(""), obs(`,"status":"amended"`, "2")))
		wantResult(t, "update", res[0], "updated Patient/p1@1:unchanged Observation/o1@2:updated")

		r, err := s.Read(ctx, "Observation", "o1")
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 2 || !r.LastUpdated.Equal(t1) || !bytes.Equal(r.Body, stamped(t, "Observation", "o1", `,"status":"amended"`, 2, t1)) {
			t.Errorf("Read = v%d %v %s", r.Version, r.LastUpdated, r.Body)
		}
		v1, err := s.VRead(ctx, "Observation", "o1", 1)
		if err != nil || !bytes.Equal(v1.Body, stamped(t, "Observation", "o1", `,"status":"final"`, 1, T0)) || !v1.LastUpdated.Equal(T0) || v1.Version != 1 {
			t.Errorf("VRead 1 = %+v, %v", v1, err)
		}
		h, total, err := s.History(ctx, "Observation", "o1", 0, 0)
		if err != nil || total != 2 {
			t.Fatalf("History total %d, err %v", total, err)
		}
		if len(h) != 2 || h[0].Version != 2 || h[1].Version != 1 {
			t.Errorf("History versions = %+v, want [2 1]", h)
		}
		for _, tc := range []struct {
			code string
			want []string
		}{{"1", nil}, {"2", []string{"o1"}}} {
			got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "code", Kind: store.KindToken, Values: []store.Value{{System: "http://loinc.org", Code: tc.code}}}}})
			if err != nil {
				t.Fatal(err)
			}
			wantStrings(t, "search code "+tc.code, ids(got.Resources), tc.want)
		}
	})

	t.Run("shrink deletes and re-adding recreates", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "c1", "h1", patient(""), obs("", "1")))
		t1 := T0.Add(time.Minute)
		clock.Set(t1)
		res := apply(t, s, Rec("patient", "c1", "h2", patient("")))
		wantResult(t, "shrink", res[0], "updated Patient/p1@1:unchanged Observation/o1@2:deleted")

		r, err := s.Read(ctx, "Observation", "o1")
		wantErr(t, "Read deleted", err, store.ErrGone)
		if !r.Deleted || r.Version != 2 || !r.LastUpdated.Equal(t1) || len(r.Body) != 0 {
			t.Errorf("Read deleted = %+v", r)
		}
		r, err = s.VRead(ctx, "Observation", "o1", 2)
		wantErr(t, "VRead deletion version", err, store.ErrGone)
		if !r.Deleted || r.Version != 2 {
			t.Errorf("VRead deletion version = %+v", r)
		}
		if _, err := s.VRead(ctx, "Observation", "o1", 1); err != nil {
			t.Errorf("VRead 1 of deleted: %v", err)
		}
		h, total, err := s.History(ctx, "Observation", "o1", 0, 0)
		if err != nil || total != 2 || len(h) != 2 || !h[0].Deleted || h[1].Deleted {
			t.Errorf("History of deleted = %+v, %d, %v", h, total, err)
		}
		got, err := s.Search(ctx, store.Query{Type: "Observation", Total: true})
		if err != nil || len(got.Resources) != 0 || got.Total != 0 {
			t.Errorf("Search finds deleted: %+v, %v", got, err)
		}
		many, err := s.GetMany(ctx, []store.Key{{Type: "Observation", ID: "o1"}})
		if err != nil || len(many) != 0 {
			t.Errorf("GetMany returns deleted: %v, %v", keys(many), err)
		}

		clock.Set(t1.Add(time.Minute))
		res = apply(t, s, Rec("patient", "c1", "h3", patient(""), obs("", "1")))
		wantResult(t, "re-add", res[0], "updated Patient/p1@1:unchanged Observation/o1@3:created")
		if r, err := s.Read(ctx, "Observation", "o1"); err != nil || r.Version != 3 {
			t.Errorf("Read re-added = v%d, %v", r.Version, err)
		}
	})

	t.Run("resource taken over by another record is not deleted", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "a", "h1", patient(""), obs("", "1")))
		res := apply(t, s, Rec("session", "b", "h1", obs("", "1")))
		wantResult(t, "take over", res[0], "created Observation/o1@1:unchanged")
		res = apply(t, s, Rec("patient", "a", "h2", patient("")))
		wantResult(t, "shrink after take over", res[0], "updated Patient/p1@1:unchanged")
		if _, err := s.Read(ctx, "Observation", "o1"); err != nil {
			t.Errorf("Read: %v", err)
		}
	})

	t.Run("failing record writes nothing of itself", func(t *testing.T) {
		clock := NewFakeClock(T0)
		s := newStore(t, clock)
		apply(t, s, Rec("patient", "c2", "h1", Res("Patient", "p2", "p2", `,"active":true`)))
		bad := Res("Observation", "bad", "p9", "")
		bad.Body = []byte(`{"id":"bad","meta":{},"resourceType":"Observation"}`) // StampMeta rejects an empty meta
		noID := Res("Observation", "noid", "p9", "")
		noID.Body = []byte(`{"resourceType":"Observation","id":"noid"}`)
		changed := Res("Patient", "p2", "p2", `,"active":false`)
		clock.Advance(time.Minute)
		res, err := s.Apply(ctx, []store.RecordWrite{
			Rec("patient", "g1", "h1", Res("Patient", "g1", "g1", "")),
			// The first resource of each failing record is fine and written
			// before the bad one fails: the record's savepoint undoes it.
			Rec("patient", "bad1", "h1", Res("Patient", "p9", "p9", "", Str("name", "Zed")), bad),
			Rec("patient", "c2", "h2", changed, noID),
			Rec("patient", "g2", "h1", Res("Patient", "g2", "g2", "")),
		})
		var be *store.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("Apply err = %v, want *store.BatchError", err)
		}
		if len(be.Records) != 2 || be.Records[0].Index != 1 || be.Records[1].Index != 2 ||
			be.Records[0].Key != (store.RecordKey{Kind: "patient", ClinicID: "bad1"}) {
			t.Errorf("BatchError = %v", be)
		}
		if len(res) != 4 {
			t.Fatalf("results = %d, want 4", len(res))
		}
		wantResult(t, "good 1", res[0], "created Patient/g1@1:created")
		wantResult(t, "bad 1", res[1], "failed")
		wantResult(t, "bad 2", res[2], "failed")
		wantResult(t, "good 2", res[3], "created Patient/g2@1:created")

		for _, k := range []store.Key{{Type: "Patient", ID: "p9"}, {Type: "Observation", ID: "bad"}, {Type: "Observation", ID: "noid"}} {
			_, err := s.Read(ctx, k.Type, k.ID)
			wantErr(t, "Read "+k.String(), err, store.ErrNotFound)
		}
		if r, err := s.Read(ctx, "Patient", "p2"); err != nil || r.Version != 1 || !bytes.Contains(r.Body, []byte(`"active":true`)) {
			t.Errorf("failed update changed p2: v%d %s %v", r.Version, r.Body, err)
		}
		for _, id := range []string{"g1", "g2"} {
			if _, err := s.Read(ctx, "Patient", id); err != nil {
				t.Errorf("Read %s: %v", id, err)
			}
		}
		src, err := s.SourceRecords(ctx, []store.RecordKey{{Kind: "patient", ClinicID: "bad1"}, {Kind: "patient", ClinicID: "c2"}, {Kind: "patient", ClinicID: "g1"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := src[store.RecordKey{Kind: "patient", ClinicID: "bad1"}]; ok || len(src) != 2 ||
			!bytes.Contains(src[store.RecordKey{Kind: "patient", ClinicID: "c2"}], []byte(`"hash":"h1"`)) {
			t.Errorf("source records after failure = %s", src)
		}
		got, err := s.Search(ctx, store.Query{Type: "Patient", Clauses: []store.Clause{{Param: "name", Kind: store.KindString, Values: []store.Value{{Str: "zed"}}}}})
		if err != nil || len(got.Resources) != 0 {
			t.Errorf("index rows of the failed record remain: %v %v", ids(got.Resources), err)
		}
		// The failed record is not remembered: re-sending it fixed lands.
		res = apply(t, s, Rec("patient", "c2", "h2", changed))
		wantResult(t, "retry", res[0], "updated Patient/p2@2:updated")
	})

	t.Run("invalid records", func(t *testing.T) {
		s := newStore(t, NewFakeClock(T0))
		for _, tc := range []struct {
			name string
			rec  store.RecordWrite
		}{
			{"no kind", Rec("", "c1", "h", Res("Patient", "p1", "p1", ""))},
			{"no clinic id", Rec("patient", "", "h", Res("Patient", "p1", "p1", ""))},
			{"no hash", Rec("patient", "c1", "", Res("Patient", "p1", "p1", ""))},
			{"no resource id", Rec("patient", "c1", "h", store.ResourceWrite{Type: "Patient", Body: Body("Patient", "", "")})},
			{"body id differs", Rec("patient", "c1", "h", store.ResourceWrite{Type: "Patient", ID: "p1", Body: Body("Patient", "p2", "")})},
			{"unknown index kind", Rec("patient", "c1", "h", Res("Patient", "p1", "p1", "", store.IndexRow{Param: "x", Kind: 99}))},
			{"resource listed twice", Rec("patient", "c1", "h", Res("Patient", "p1", "p1", ""), Res("Patient", "p1", "p1", `"active":true`))},
			{"compartment reference to another patient", Rec("patient", "c1", "h", Res("Patient", "p1", "p1", ""),
				Res("Observation", "o1", "p1", "", Ref("subject", "Patient/p2")))},
			{"date range reversed", Rec("patient", "c1", "h", Res("Patient", "p1", "p1", "", store.IndexRow{Param: "birthdate", Kind: store.KindDate, Lo: 2, Hi: 1}))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, err := s.Apply(ctx, []store.RecordWrite{tc.rec})
				var be *store.BatchError
				if !errors.As(err, &be) || len(res) != 1 || res[0].Outcome != store.Failed {
					t.Errorf("Apply = %v, %v; want a failed record", res, err)
				}
				if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("invalid record wrote Patient/p1: %v", err)
				}
			})
		}
	})

	t.Run("empty batch", func(t *testing.T) {
		s := newStore(t, NewFakeClock(T0))
		res, err := s.Apply(ctx, nil)
		if err != nil || len(res) != 0 {
			t.Errorf("Apply(nil) = %v, %v", res, err)
		}
	})

	t.Run("canceled context writes nothing", func(t *testing.T) {
		s := newStore(t, NewFakeClock(T0))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Apply(cctx, []store.RecordWrite{Rec("patient", "c1", "h1", patient(""))}); err == nil {
			t.Error("Apply with a canceled context succeeded")
		}
		if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read after canceled Apply: %v", err)
		}
	})

	t.Run("source records", func(t *testing.T) {
		s := newStore(t, NewFakeClock(T0))
		a := Rec("patient", "c1", "h1", patient(""))
		b := Rec("session", "s1", "h1")
		apply(t, s, a, b)
		got, err := s.SourceRecords(ctx, []store.RecordKey{{Kind: "patient", ClinicID: "c1"}, {Kind: "session", ClinicID: "s1"}, {Kind: "patient", ClinicID: "nope"}, {Kind: "session", ClinicID: "c1"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !bytes.Equal(got[store.RecordKey{Kind: "patient", ClinicID: "c1"}], a.Source) || !bytes.Equal(got[store.RecordKey{Kind: "session", ClinicID: "s1"}], b.Source) {
			t.Errorf("SourceRecords = %s", got)
		}
		if got, err := s.SourceRecords(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("SourceRecords(nil) = %v, %v", got, err)
		}
	})
}
