package mapping

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the package layering (docs/design/architecture.md:
// dependencies point inward): the mappers never import the web framework,
// Redis, SQL or JWT code.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	out, err := exec.Command("go", "list", "-deps", ".", "./codes").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// database/sql/driver is allowed: github.com/google/uuid imports it for
	// its Scanner/Valuer methods.
	exact := map[string]bool{"database/sql": true, "net/http": true}
	prefixes := []string{"github.com/labstack/echo", "modernc.org/sqlite", "github.com/redis/", "github.com/golang-jwt/", "github.com/lib/pq", "github.com/jackc/"}
	for _, pkg := range strings.Fields(string(out)) {
		if exact[pkg] {
			t.Errorf("mapping depends on %s", pkg)
		}
		for _, p := range prefixes {
			if strings.HasPrefix(pkg, p) {
				t.Errorf("mapping depends on %s", pkg)
			}
		}
	}
}
