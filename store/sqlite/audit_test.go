package sqlite_test

import (
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestAuditContract(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T, clock store.Clock) store.AuditStore { return openTemp(t, clock) })
}
