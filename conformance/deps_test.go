package conformance

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// forbiddenDeps are packages mapping and conformance must never depend on
// (docs/design/architecture.md: dependencies point inward; no web framework,
// cache, database or JWT code in the pure layers). Module paths match with all
// their subpackages; database/sql matches exactly, because database/sql/driver
// (two interfaces, no SQL) comes in through github.com/google/uuid's
// Scanner/Valuer methods.
var forbiddenDeps = []string{
	"github.com/labstack/echo",
	"github.com/redis",
	"database/sql",
	"github.com/golang-jwt",
	"github.com/jackc",
	"modernc.org/sqlite",
}

func forbidden(dep string) bool {
	for _, bad := range forbiddenDeps {
		if dep == bad || (bad != "database/sql" && strings.HasPrefix(dep, bad+"/")) {
			return true
		}
	}
	return false
}

func TestForbidden(t *testing.T) {
	for dep, want := range map[string]bool{
		"github.com/labstack/echo/v4": true, "github.com/redis/go-redis/v9": true, "database/sql": true,
		"github.com/golang-jwt/jwt/v5": true, "github.com/jackc/pgx/v5": true, "modernc.org/sqlite": true,
		"modernc.org/sqlite/lib": true, "database/sql/driver": false, "github.com/google/uuid": false,
		"github.com/labstack/echoes": false,
	} {
		if got := forbidden(dep); got != want {
			t.Errorf("forbidden(%q) = %v, want %v", dep, got, want)
		}
	}
}

// TestDependencies runs `go list -deps` on ./mapping/... and
// ./conformance/... and fails on any forbidden dependency.
func TestDependencies(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("go binary not found")
		}
	}
	for _, pattern := range []string{"./mapping/...", "./conformance/..."} {
		t.Run(pattern, func(t *testing.T) {
			// -e: a package another engineer is still editing must not hide
			// the imports of the others.
			cmd := exec.Command(goBin, "list", "-e", "-deps", "-f", "{{.ImportPath}}", pattern)
			cmd.Dir = ".." // module root
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, stderr.String())
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 {
				t.Skipf("%s: no packages yet", pattern)
			}
			for _, dep := range deps {
				if forbidden(dep) {
					t.Errorf("%s depends on %s", pattern, dep)
				}
			}
		})
	}
}
