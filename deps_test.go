package ketabridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// module is this module's path.
const module = "github.com/ketabridge/ketabridge"

// thirdParty names the outside modules the table allows by name. A module
// imported directly that is not here fails the test: a new dependency gets
// a name and a place in the table (and a line in README's dependency
// table).
var thirdParty = map[string][]string{
	"echo":        {"github.com/labstack/echo/v4"},
	"prometheus":  {"github.com/prometheus/client_golang"},
	"vegeta":      {"github.com/tsenart/vegeta/v12"},
	"r4":          {"github.com/samply/golang-fhir-models/fhir-models"},
	"jwt":         {"github.com/golang-jwt/jwt/v5"},
	"jose":        {"github.com/go-jose/go-jose/v4"},
	"x/crypto":    {"golang.org/x/crypto"},
	"uuid":        {"github.com/google/uuid"},
	"pgx":         {"github.com/jackc/pgx/v5"},
	"sqlite":      {"modernc.org/sqlite"},
	"redis":       {"github.com/redis/go-redis/v9", "github.com/go-redis/redis_rate/v10"},
	"jsonschema":  {"github.com/invopop/jsonschema"},
	"progressbar": {"github.com/schollz/progressbar/v3", "golang.org/x/term"},
	"s2":          {"github.com/klauspost/compress"},
	"x/time":      {"golang.org/x/time"},
	"x/text":      {"golang.org/x/text"},
}

// room is one row of the table: the packages it holds, the module packages
// and named outside modules they may import directly, and what no package
// of the room may depend on even indirectly.
type room struct {
	// pkg is a package path relative to the module; "x/..." is x and every
	// package below it. A package's room is the row with the longest match.
	pkg string
	// internal are the module packages the room may import, as patterns
	// like pkg; "..." is the whole module. except are taken out of them.
	internal, except []string
	// outside are names from thirdParty.
	outside []string
	// never are import paths (and everything below them; "database/sql" is
	// matched exactly) no package of the room may depend on, transitively.
	never []string
}

// pure is what the pure layers never depend on: no web framework, HTTP,
// cache, database or JWT code (docs/design/architecture.md, Rooms).
// database/sql/driver is allowed: github.com/google/uuid imports it for its
// Scanner/Valuer methods.
var pure = []string{"github.com/labstack/echo", "net/http", "github.com/redis", "github.com/go-redis",
	"database/sql", "github.com/jackc", "github.com/lib/pq", "modernc.org/sqlite", "github.com/golang-jwt"}

// rooms is the table of docs/design/architecture.md, Rooms, as code.
var rooms = []room{
	{pkg: ".", internal: nil},
	// The product binary never reaches the benchmark's unaudited switch.
	{pkg: "cmd/ketabridge", internal: []string{"..."}, except: []string{"bench", "cmd/...", "internal/benchonly"}, outside: []string{"progressbar"}},
	{pkg: "cmd/ketabridge-bench", internal: []string{"bench", "server"}},
	{pkg: "bench", internal: []string{"..."}, except: []string{"cmd/..."}, outside: []string{"vegeta", "pgx", "uuid"}},
	{pkg: "server", internal: []string{"..."}, except: []string{"cmd/...", "bench"}, outside: []string{"echo"}},
	{pkg: "internal/benchonly"},
	{pkg: "ops", internal: []string{"auth"}, outside: []string{"echo", "prometheus"}},
	{pkg: "fhir", internal: []string{"auth", "store", "fhir/...", "conformance/...", "priorauth"}, outside: []string{"echo", "r4", "uuid"}},
	{pkg: "fhir/search", internal: []string{"store"}, outside: []string{"r4"}},
	// The client side of Bulk Data export: plain HTTP, nothing of the server.
	{pkg: "fhir/bulkclient"},
	{pkg: "fhir/referral", never: pure},
	{pkg: "fhir/auditlog", internal: []string{"fhir", "store"}, outside: []string{"uuid"}},
	{pkg: "ingestapi", internal: []string{"auth", "fhir", "mapping/...", "store"}, outside: []string{"echo"}},
	{pkg: "apps/course", internal: []string{"auth", "store"}, outside: []string{"echo"}},
	{pkg: "auth", internal: []string{"store"}, outside: []string{"echo", "jwt", "jose", "x/crypto", "uuid"}},
	{pkg: "mapping", internal: []string{"mapping/...", "conformance/fhirjson"}, outside: []string{"r4", "uuid"}, never: pure},
	{pkg: "mapping/clinic", outside: []string{"jsonschema"}, never: pure},
	{pkg: "mapping/codes", never: pure},
	{pkg: "mapping/synth", internal: []string{"mapping/clinic"}, never: pure},
	{pkg: "mapping/ingest", internal: []string{"mapping/...", "store"}, never: pure},
	{pkg: "priorauth", internal: []string{"mapping/codes", "conformance/fhirjson"}, outside: []string{"r4"}, never: pure},
	{pkg: "conformance", internal: []string{"conformance/fhirjson"}, outside: []string{"r4"}, never: pure},
	{pkg: "conformance/fhirjson", never: pure},
	{pkg: "conformance/selftest", internal: []string{"conformance", "fhir/search", "fhir/bulkclient"}},
	{pkg: "store", outside: []string{"x/text"}, never: pure},
	{pkg: "store/sqlite", internal: []string{"store", "store/internal/sqlcore"}, outside: []string{"sqlite"}},
	{pkg: "store/postgres", internal: []string{"store", "store/internal/sqlcore"}, outside: []string{"pgx"}},
	{pkg: "store/internal/sqlcore", internal: []string{"store"}},
	{pkg: "store/redis", internal: []string{"store"}, outside: []string{"redis"}},
	{pkg: "store/memory", internal: []string{"store"}, outside: []string{"x/time"}},
	{pkg: "store/cached", internal: []string{"store", "store/memory"}, outside: []string{"s2"}},
	{pkg: "store/storetest", internal: []string{"store"}, outside: []string{"uuid"}},
}

// match reports whether rel (a package path relative to the module, "."
// for the root) is named by pattern.
func match(pattern, rel string) bool {
	switch {
	case pattern == "...":
		return true
	case strings.HasSuffix(pattern, "/..."):
		base := strings.TrimSuffix(pattern, "/...")
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return pattern == rel
}

// roomOf returns the row of rel: the longest pattern that names it.
func roomOf(rel string) (room, bool) {
	var best room
	found := false
	for _, r := range rooms {
		if match(r.pkg, rel) && (!found || len(r.pkg) > len(best.pkg)) {
			best, found = r, true
		}
	}
	return best, found
}

// allowsInternal reports whether the room may import the module package rel.
func (r room) allowsInternal(rel string) bool {
	ok := slices.ContainsFunc(r.internal, func(p string) bool { return match(p, rel) })
	return ok && !slices.ContainsFunc(r.except, func(p string) bool { return match(p, rel) })
}

// outsideName returns the thirdParty name of an outside import path.
func outsideName(path string) (string, bool) {
	for name, mods := range thirdParty {
		for _, m := range mods {
			if path == m || strings.HasPrefix(path, m+"/") {
				return name, true
			}
		}
	}
	return "", false
}

// forbids reports whether dep is under one of never.
func forbids(never []string, dep string) bool {
	return slices.ContainsFunc(never, func(n string) bool {
		return dep == n || (n != "database/sql" && strings.HasPrefix(dep, n+"/"))
	})
}

// listed is one package as go list -json describes it.
type listed struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// goList runs `go list -deps -test=false -json` on every package of the
// module and returns the module's own packages. Tests are not listed: what
// a test imports is the test's business.
func goList(t *testing.T) []listed {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatal("no go binary to list the packages with")
		}
	}
	cmd := exec.Command(goBin, "list", "-e", "-deps", "-test=false", "-json=ImportPath,Standard,Imports,Deps,Error", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/") {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s: the rules were not checked\n%s", len(pkgs), module, stderr.String())
	}
	return pkgs
}

func relative(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// TestDependencies fails when a package imports a module package or an
// outside module its row of docs/design/architecture.md does not allow, when
// a pure package depends on web, HTTP, database, cache or JWT code even
// indirectly, or when a package has no row.
func TestDependencies(t *testing.T) {
	for _, p := range goList(t) {
		rel := relative(p.ImportPath)
		if p.Error != nil {
			t.Errorf("%s: %s", rel, p.Error.Err)
			continue
		}
		r, ok := roomOf(rel)
		if !ok {
			t.Errorf("%s has no row in docs/design/architecture.md (and deps_test.go)", rel)
			continue
		}
		for _, imp := range p.Imports {
			switch {
			case imp == module || strings.HasPrefix(imp, module+"/"):
				if !r.allowsInternal(relative(imp)) {
					t.Errorf("%s imports %s: its row (%s) does not allow it", rel, relative(imp), r.pkg)
				}
			case !strings.Contains(strings.Split(imp, "/")[0], "."):
				// The standard library.
			default:
				name, known := outsideName(imp)
				switch {
				case !known:
					t.Errorf("%s imports %s, a module the table does not name", rel, imp)
				case !slices.Contains(r.outside, name):
					t.Errorf("%s imports %s (%s): its row (%s) does not allow it", rel, imp, name, r.pkg)
				}
			}
		}
		var bad []string
		for _, dep := range p.Deps {
			if forbids(r.never, dep) {
				bad = append(bad, dep)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s depends on %s (%d forbidden packages in all): the %s row is pure", rel, bad[0], len(bad), r.pkg)
		}
	}
}

// TestRules checks the matching the table relies on.
func TestRules(t *testing.T) {
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"a subtree names its root", match("fhir/...", "fhir"), true},
		{"a subtree names a child", match("fhir/...", "fhir/search"), true},
		{"a subtree is not a prefix", match("fhir/...", "fhirx"), false},
		{"the module", match("...", "store/sqlite"), true},
		{"the exact row wins", must(roomOf("fhir/search")).pkg == "fhir/search", true},
		{"cmd may not import bench", must(roomOf("cmd/ketabridge")).allowsInternal("bench"), false},
		{"cmd may import server", must(roomOf("cmd/ketabridge")).allowsInternal("server"), true},
		{"server may not import cmd", must(roomOf("server")).allowsInternal("cmd/ketabridge"), false},
		{"mapping may not import store", must(roomOf("mapping")).allowsInternal("store"), false},
		{"echo is named", ok(outsideName("github.com/labstack/echo/v4/middleware")), true},
		{"an echo look-alike is not", ok(outsideName("github.com/labstack/echoes")), false},
		{"database/sql is pure-forbidden", forbids(pure, "database/sql"), true},
		{"database/sql/driver is not", forbids(pure, "database/sql/driver"), false},
		{"net/http/httptest is", forbids(pure, "net/http/httptest"), true},
		{"an unknown package has no row", ok2(roomOf("nowhere")), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func must(r room, _ bool) room     { return r }
func ok(_ string, found bool) bool { return found }
func ok2(_ room, found bool) bool  { return found }

// TestTableMatchesArchitecture: the rows here are the rows of the table in
// docs/design/architecture.md, so the document and the test cannot drift.
func TestTableMatchesArchitecture(t *testing.T) {
	f, err := os.Open(filepath.Join("docs", "design", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "| package |"):
			in = true
		case in && !strings.HasPrefix(line, "|"):
			in = false
		case in && !strings.HasPrefix(line, "|---"):
			first := strings.Split(line, "|")[1]
			for _, name := range strings.Split(first, ",") {
				doc = append(doc, strings.Trim(strings.TrimSpace(name), "`"))
			}
		}
	}
	var code []string
	for _, r := range rooms {
		name := r.pkg
		if name == "." {
			name = "ketabridge"
		}
		code = append(code, name)
	}
	slices.Sort(doc)
	slices.Sort(code)
	if !slices.Equal(doc, code) {
		t.Errorf("docs/design/architecture.md lists %v\ndeps_test.go lists %v", doc, code)
	}
}
