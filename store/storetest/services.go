package storetest

import (
	"fmt"
	"os"
	"sync"
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
	// A skip is silent without -v: say it once per test binary on stderr
	// (shown by `go test` in a package directory; `make test` prints its
	// own note for ./...).
	if _, said := told.LoadOrStore(why, true); !said {
		fmt.Fprintf(os.Stderr, "skipping the tests that need it: %s\n", why)
	}
	t.Skip(why)
}

// told holds the skip reasons already printed.
var told sync.Map
