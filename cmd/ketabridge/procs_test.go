package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store/postgres"
	redisstore "github.com/ketabridge/ketabridge/store/redis"
)

// This file runs KetaBridge as real processes (the built binary) against
// real PostgreSQL and Redis: the replica and fault tests.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary the process tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// ketabridgeBinary builds this command once per test run.
func ketabridgeBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ketabridge-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ketabridge")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// testSchema is a fresh PostgreSQL schema on the server dbURL names,
// dropped when t ends, as the URL that selects it: no two tests see each
// other's data.
func testSchema(t *testing.T, dbURL string) string {
	t.Helper()
	u, drop, err := postgres.NewSchema(context.Background(), dbURL, fmt.Sprintf("kb_test_%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop(context.Background()) })
	return u
}

// testPrefix is a fresh Redis key prefix whose keys are deleted when t
// ends.
func testPrefix(t *testing.T, redisURL string) string {
	t.Helper()
	prefix := fmt.Sprintf("ketabridge-test:%d:", time.Now().UnixNano())
	r, err := redisstore.Connect(redisURL, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.DeleteAll(context.Background())
		r.Close()
	})
	return prefix
}

// envOf is an environment of the given variables only.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// proc is one running gateway process.
type proc struct {
	name string
	cmd  *exec.Cmd
	base string // where it listens
	logs *syncBuffer
	done chan struct{}
}

// startProc starts `ketabridge serve` with env and args on addr and waits
// until /healthz answers.
func startProc(t *testing.T, name, addr string, env []string, args ...string) *proc {
	t.Helper()
	bin := ketabridgeBinary(t)
	p := &proc{name: name, base: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--addr", addr, "--log-level", "info"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("%s exited before answering: %s", name, p.logs)
		default:
		}
		if resp, err := http.Get(p.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer /healthz in time: %s", name, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop in time; killing", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// do sends a request to the process and buffers the answer.
func (p *proc) do(t *testing.T, method, path, token, contentType string, body []byte) smartResp {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return smartDo(t, &http.Client{Timeout: 30 * time.Second}, req)
}

// form posts an urlencoded form to the process.
func (p *proc) form(t *testing.T, path string, form url.Values) smartResp {
	t.Helper()
	return p.do(t, http.MethodPost, path, "", "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// cliEnv runs a ketabridge subcommand in-process with the given
// environment (database and Redis URLs) and returns its stdout.
func cliEnv(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		getenv: envOf(vars)}); code != 0 {
		t.Fatalf("ketabridge %s exited %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}
