package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store/storetest"
)

// The fault tests stop and restart their own private PostgreSQL and Redis
// servers (on free loopback ports, in temporary directories) under running
// gateways, so the shared services other tests use are never touched.

// privateRedis is a redis-server of this test.
type privateRedis struct {
	port string
	cmd  *exec.Cmd
	done chan struct{}
}

func startPrivateRedis(t *testing.T, port string) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		storetest.SkipOrFail(t, "redis-server is not installed")
	}
	r := &privateRedis{port: port, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--logfile", "")
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() { r.kill() })
	waitFor(t, "private redis", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

func (r *privateRedis) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

// pause freezes the server (SIGSTOP): connections hang, as with a network
// partition, and its data survives for resume.
func (r *privateRedis) pause(t *testing.T) {
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

func (r *privateRedis) resume(t *testing.T) {
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

func (r *privateRedis) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	<-r.done
}

// privatePG is a PostgreSQL cluster of this test (initdb + pg_ctl).
type privatePG struct {
	t       *testing.T
	bin     string // directory of initdb, pg_ctl
	dir     string // data directory
	sock    string // socket directory
	port    string
	asUser  []string // runuser prefix when running as root
	logFile string
}

func startPrivatePG(t *testing.T, port string) *privatePG {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		storetest.SkipOrFail(t, "initdb is not installed")
	}
	pg := &privatePG{t: t, bin: filepath.Dir(bins[len(bins)-1]), port: port}
	base, err := os.MkdirTemp("", "kb-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	pg.dir, pg.sock, pg.logFile = filepath.Join(base, "data"), filepath.Join(base, "sock"), filepath.Join(base, "pg.log")
	for _, d := range []string{pg.dir, pg.sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			storetest.SkipOrFail(t, "running as root and there is no postgres user to run a private PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{base, pg.dir, pg.sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		pg.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	pg.run("initdb", "-D", pg.dir, "-A", "trust", "-U", "postgres", "--no-sync")
	pg.start()
	t.Cleanup(func() { pg.runQuiet("pg_ctl", "-D", pg.dir, "-m", "immediate", "stop") })
	return pg
}

func (pg *privatePG) command(name string, args ...string) *exec.Cmd {
	full := append(append([]string{}, pg.asUser...), append([]string{filepath.Join(pg.bin, name)}, args...)...)
	return exec.Command(full[0], full[1:]...)
}

func (pg *privatePG) run(name string, args ...string) {
	pg.t.Helper()
	if out, err := pg.command(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(pg.logFile)
		pg.t.Fatalf("%s: %v\n%s\n%s", name, err, out, log)
	}
}

func (pg *privatePG) runQuiet(name string, args ...string) { _ = pg.command(name, args...).Run() }

func (pg *privatePG) start() {
	pg.t.Helper()
	pg.run("pg_ctl", "-D", pg.dir, "-l", pg.logFile, "-w", "-t", "60", "-o",
		fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.sock), "start")
}

// stop shuts the server down the way an operator or a crash would: fast
// mode disconnects every session at once.
func (pg *privatePG) stop() {
	pg.t.Helper()
	pg.run("pg_ctl", "-D", pg.dir, "-m", "fast", "-w", "stop")
}

func (pg *privatePG) url() string {
	return "postgres://postgres@127.0.0.1:" + pg.port + "/postgres?sslmode=disable"
}

// waitFor polls cond every 50 ms for up to 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns /readyz's status code and body fields.
func readyz(t *testing.T, p *proc) (int, string, []string) {
	t.Helper()
	r := p.do(t, http.MethodGet, "/readyz", "", "", nil)
	var body struct {
		Status string   `json:"status"`
		Down   []string `json:"down"`
	}
	_ = json.Unmarshal(r.body, &body)
	return r.status, body.Status, body.Down
}

// wantOutcome checks r is status with an OperationOutcome whose first issue
// has code.
func wantOutcome(t *testing.T, what string, r smartResp, status int, code string) {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if r.status != status || json.Unmarshal(r.body, &oo) != nil || oo.ResourceType != "OperationOutcome" ||
		len(oo.Issue) == 0 || oo.Issue[0].Code != code {
		t.Fatalf("%s: got %d %s, want %d OperationOutcome %s", what, r.status, r.body, status, code)
	}
	if status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 without Retry-After", what)
	}
}

func TestFaultsRedisAndPostgresDown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	pg := startPrivatePG(t, smartFreePort(t))
	rd := startPrivateRedis(t, smartFreePort(t))
	rs := startReplicasOn(t, pg.url(), rd.url())
	a, b := rs.a, rs.b

	// A long-lived token and a warm cache at both replicas.
	tok := rs.backendToken(t, a, "system/*.rs system/ClinicRecord.write")
	for _, p := range []*proc{a, b} {
		if fam, _ := rs.readPatient(t, p, tok); fam != "Young" {
			t.Fatalf("before the faults %s reads %q", p.name, fam)
		}
	}
	records := func(family string) []byte { return patientRecords(t, family) }
	ingest := func(p *proc, family string) smartResp {
		return p.do(t, http.MethodPost, "/internal/v1/records", tok, "application/x-ndjson", records(family))
	}
	acked := "Young" // the family name of the last acknowledged ingest

	t.Run("redis down", func(t *testing.T) {
		rd.pause(t)
		defer rd.resume(t) // whatever happens below
		// Reads are served from the store, uncached, within the timeouts.
		for _, p := range []*proc{a, b} {
			start := time.Now()
			if fam, _ := rs.readPatient(t, p, tok); fam != acked {
				t.Fatalf("%s reads %q with Redis down, want %q", p.name, fam, acked)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s took %v to answer a read with Redis down", p.name, d)
			}
		}
		if code, status, down := readyz(t, a); code != http.StatusOK || status != "degraded" || strings.Join(down, ",") != "redis" {
			t.Errorf("/readyz with Redis down: %d %s %v", code, status, down)
		}
		// Shared auth state cannot be checked: the token endpoint fails
		// closed (the assertion's jti cannot be recorded).
		r := a.form(t, "/auth/token", rs.assertionForm(t, rs.signAssertion(t), "system/*.rs"))
		wantOAuthError(t, r, []int{http.StatusServiceUnavailable}, "temporarily_unavailable")
		// An ingest is stored but cannot invalidate the replicas' caches: it
		// is not acknowledged (503), and nothing reads stale because of it.
		wantOutcome(t, "ingest with Redis down", ingest(a, "Redmond"), http.StatusServiceUnavailable, "transient")
		if fam, _ := rs.readPatient(t, b, tok); fam != "Redmond" && fam != acked {
			t.Fatalf("B reads %q", fam)
		}
	})

	t.Run("redis back", func(t *testing.T) {
		waitFor(t, "readyz ready after Redis resumed", func() bool {
			_, status, _ := readyz(t, a)
			return status == "ready"
		})
		// The retry is acknowledged, and both replicas read it at once
		// (B's cache still holds the pre-outage entry: it must not serve it).
		if r := ingest(a, "Redmond"); r.status != http.StatusOK {
			t.Fatalf("ingest after recovery: %s", r)
		}
		acked = "Redmond"
		for _, p := range []*proc{b, a} {
			if fam, _ := rs.readPatient(t, p, tok); fam != acked {
				t.Fatalf("%s reads %q after recovery, want the acknowledged %q", p.name, fam, acked)
			}
		}
		if r := a.form(t, "/auth/token", rs.assertionForm(t, rs.signAssertion(t), "system/*.rs")); r.status != http.StatusOK {
			t.Fatalf("token endpoint after recovery: %s", r)
		}
	})

	t.Run("postgres down", func(t *testing.T) {
		pg.stop()
		code, status, down := readyz(t, a)
		// The audit trail is down too once an append has failed (it fails
		// closed: docs/design/security.md AUD-ARCH-2).
		if d := strings.Join(down, ","); code != http.StatusServiceUnavailable || status != "unavailable" || (d != "database" && d != "database,audit") {
			t.Errorf("/readyz with PostgreSQL down: %d %s %v", code, status, down)
		}
		if r := a.do(t, http.MethodGet, "/healthz", "", "", nil); r.status != http.StatusOK {
			t.Errorf("/healthz with PostgreSQL down: %s", r)
		}
		// A read the cache cannot answer, a search, and an ingest: 503.
		org := rs.backendSearchPath()
		wantOutcome(t, "search with PostgreSQL down", a.do(t, http.MethodGet, org, tok, "", nil), http.StatusServiceUnavailable, "transient")
		wantOutcome(t, "ingest with PostgreSQL down", ingest(b, "Postmark"), http.StatusServiceUnavailable, "transient")
		// Registry lookups fail closed too.
		r := a.form(t, "/auth/token", rs.assertionForm(t, rs.signAssertion(t), "system/*.rs"))
		wantOAuthError(t, r, []int{http.StatusServiceUnavailable}, "temporarily_unavailable")
	})

	t.Run("postgres back", func(t *testing.T) {
		pg.start()
		// Each replica is ready again once its own audit writer has
		// appended after its backoff (AUD-ARCH-2): a load balancer routes
		// by each replica's /readyz, so the test waits for both.
		for _, p := range []*proc{a, b} {
			waitFor(t, p.name+" readyz ready after PostgreSQL restarted", func() bool {
				code, _, _ := readyz(t, p)
				return code == http.StatusOK
			})
		}
		// Nothing acknowledged was lost, and the gateway works again with no
		// restart.
		for _, p := range []*proc{a, b} {
			if fam, _ := rs.readPatient(t, p, tok); fam != acked {
				t.Fatalf("%s reads %q after PostgreSQL came back, want the acknowledged %q", p.name, fam, acked)
			}
		}
		if r := ingest(b, "Postmark"); r.status != http.StatusOK {
			t.Fatalf("ingest after recovery: %s", r)
		}
		if fam, _ := rs.readPatient(t, a, tok); fam != "Postmark" {
			t.Fatalf("A reads %q after B's acknowledged ingest", fam)
		}
		if r := a.do(t, http.MethodGet, rs.backendSearchPath(), tok, "", nil); r.status != http.StatusOK {
			t.Fatalf("search after recovery: %s", r)
		}
	})
}

// backendSearchPath is a search no earlier step ran (so no cache holds it).
func (rs *replicaSet) backendSearchPath() string {
	return "/fhir/Organization?name=" + url.QueryEscape("lakeside") + "&_count=7"
}

// TestStartsWithRedisDown: a replica (re)started while Redis is down comes
// up degraded rather than crash-looping, and recovers when Redis appears.
func TestStartsWithRedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dbURL := testSchema(t, storetest.ServiceURL(t, "KETABRIDGE_TEST_DATABASE_URL"))
	redisPort := smartFreePort(t) // nothing listens there yet
	port := smartFreePort(t)
	env := []string{"KETABRIDGE_DATABASE_URL=" + dbURL, "KETABRIDGE_REDIS_URL=redis://127.0.0.1:" + redisPort + "/0",
		"KETABRIDGE_DATA_DIR=" + t.TempDir(), "KETABRIDGE_BASE_URL=http://127.0.0.1:" + port}
	p := startProc(t, "A", "127.0.0.1:"+port, env)
	if code, status, down := readyz(t, p); code != http.StatusOK || status != "degraded" || strings.Join(down, ",") != "redis" {
		t.Fatalf("/readyz with Redis down at start: %d %s %v\n%s", code, status, down, p.logs)
	}
	// The same replica restarted (definitions now unchanged) still starts.
	p.stop(t)
	p = startProc(t, "A again", "127.0.0.1:"+port, env)
	startPrivateRedis(t, redisPort)
	waitFor(t, "readyz ready once Redis is up", func() bool {
		_, status, _ := readyz(t, p)
		return status == "ready"
	})
}
