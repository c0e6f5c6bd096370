package sqlite_test

import (
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/storetest"
)

func TestAuthContract(t *testing.T) {
	storetest.RunAuth(t, func(t *testing.T, clock store.Clock) store.AuthStore { return openTemp(t, clock) })
}
