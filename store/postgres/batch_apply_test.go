package postgres_test

import (
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

// TestBatchApplyContract runs the batch contract on the bulk path (bulk.go):
// records of one Apply that depend on each other answer as written one at a
// time.
func TestBatchApplyContract(t *testing.T) {
	storetest.RunBatchApply(t, func(t *testing.T, clock store.Clock) store.Store { return openFresh(t, clock) })
}
