package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func openTemp(t testing.TB, clock store.Clock) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ketabridge.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock store.Clock) store.Store { return openTemp(t, clock) })
}

func TestExportContract(t *testing.T) {
	storetest.RunExport(t, func(t *testing.T, clock store.Clock) storetest.ExportStore { return openTemp(t, clock) })
}
