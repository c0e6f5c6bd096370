package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/store"
	"github.com/ketabridge/ketabridge/store/sqlite"
)

// cliResult is what one command line produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs ketabridge with args against dataDir, stdin feeding the command.
func runCLI(t *testing.T, dataDir, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append(append([]string{}, args...), "--data-dir", dataDir)
	code := run(context.Background(), full, env{
		stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, getenv: envOf(nil),
	})
	return cliResult{code, stdout.String(), stderr.String()}
}

// openData opens the store in dataDir for checking what a command wrote.
func openData(t *testing.T, dataDir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dataDir, "ketabridge.db"), store.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
