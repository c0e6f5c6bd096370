package storetest

import (
	"os"
	"testing"
)

// requireServices names the variable that turns a missing test service
// from a skip into a failure (CI sets it to 1).
const requireServices = "KETABRIDGE_TEST_REQUIRE_SERVICES"

// ServiceURL returns the URL of a test service from the environment
// variable name (KETABRIDGE_TEST_DATABASE_URL, KETABRIDGE_TEST_REDIS_URL),
// or skips t saying which is unset - failing it instead when
// KETABRIDGE_TEST_REQUIRE_SERVICES=1.
func ServiceURL(t testing.TB, name string) string {
	t.Helper()
	u := os.Getenv(name)
	if u == "" {
		SkipOrFail(t, name+" is unset: no server to test against")
	}
	return u
}

// SkipOrFail skips t with why, or fails it when
// KETABRIDGE_TEST_REQUIRE_SERVICES=1: a test that needs a service the
// machine lacks.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(requireServices) == "1" {
		t.Fatal(why + " and " + requireServices + "=1")
	}
	t.Skip(why)
}
