package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestApplyWriteFailure covers a record failing after it wrote rows (an I/O
// or SQL error rather than bad data): the batch is rerun with a savepoint per
// record, the failing record is rolled back alone and the others land.
func TestApplyWriteFailure(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "fail.db"), storetest.NewFakeClock(storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errDisk := errors.New("disk on fire")
	failWriteOf(t, "o2", errDisk)
	res, err := s.Apply(ctx, []store.RecordWrite{
		storetest.Rec("session", "a", "h1", storetest.Res("Observation", "o1", "p1", "", storetest.Token("code", "s", "c"))),
		storetest.Rec("session", "b", "h1",
			storetest.Res("Observation", "o9", "p1", "", storetest.Token("code", "s", "new-param-value")),
			storetest.Res("Observation", "o2", "p1", "", storetest.Str("newparam", "x"))),
		storetest.Rec("session", "c", "h1", storetest.Res("Observation", "o3", "p1", "")),
	})
	var be *store.BatchError
	if !errors.As(err, &be) || len(be.Records) != 1 || be.Records[0].Index != 1 || !errors.Is(err, errDisk) {
		t.Fatalf("Apply err = %v, want a BatchError for record 1 wrapping the write error", err)
	}
	if res[0].Outcome != store.Created || res[1].Outcome != store.Failed || res[2].Outcome != store.Created {
		t.Errorf("outcomes = %v %v %v", res[0].Outcome, res[1].Outcome, res[2].Outcome)
	}
	for _, tc := range []struct {
		id   string
		want error
	}{{"o1", nil}, {"o9", store.ErrNotFound}, {"o2", store.ErrNotFound}, {"o3", nil}} {
		if _, err := s.Read(ctx, "Observation", tc.id); !errors.Is(err, tc.want) {
			t.Errorf("Read %s: err = %v, want %v", tc.id, err, tc.want)
		}
	}
	src, err := s.SourceRecords(ctx, []store.RecordKey{{Kind: "session", ClinicID: "b"}})
	if err != nil || len(src) != 0 {
		t.Errorf("source record of the failed record: %v, %v", src, err)
	}
	// The param the failed record introduced is usable afterwards.
	failAfterWrite = nil
	if _, err := s.Apply(ctx, []store.RecordWrite{storetest.Rec("session", "b", "h1", storetest.Res("Observation", "o2", "p1", "", storetest.Str("newparam", "x")))}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Search(ctx, store.Query{Type: "Observation", Clauses: []store.Clause{{Param: "newparam", Kind: store.KindString, Values: []store.Value{{Str: "x"}}}}})
	if err != nil || len(got.Resources) != 1 || got.Resources[0].ID != "o2" {
		t.Errorf("search after retry: %+v, %v", got.Resources, err)
	}
}

// failWriteOf makes the writer fail with err right after it writes the
// created resource id (failAfterWrite), as a disk error mid-transaction
// would, until the test ends.
func failWriteOf(t *testing.T, id string, err error) {
	t.Helper()
	failAfterWrite = func(_, got string) error {
		if got == id {
			return err
		}
		return nil
	}
	t.Cleanup(func() { failAfterWrite = nil })
}
