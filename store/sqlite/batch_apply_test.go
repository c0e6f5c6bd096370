package sqlite_test

import (
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestBatchApplyContract: the batch contract the PostgreSQL bulk path is
// held to holds on SQLite too (the same answers on both backends).
func TestBatchApplyContract(t *testing.T) {
	storetest.RunBatchApply(t, func(t *testing.T, clock store.Clock) store.Store { return openTemp(t, clock) })
}
