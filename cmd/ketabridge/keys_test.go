package main

import (
	"context"
	"strings"
	"testing"
)

func TestKeysCommand(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir() + "/data"

	r := runCLI(t, data, "", "keys", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "no signing keys") {
		t.Fatalf("keys list on an empty store: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The first rotate generates the initial key, then replaces it.
	for i, want := range []int{2, 3} {
		r = runCLI(t, data, "", "keys", "rotate")
		if r.code != 0 {
			t.Fatalf("rotate %d: exit %d, stderr %q", i, r.code, r.stderr)
		}
		if strings.Contains(r.stdout, "PRIVATE KEY") {
			t.Fatal("keys rotate printed a private key")
		}
		if n := strings.Count(r.stdout, "  current"); n != 1 {
			t.Errorf("rotate %d: %d current keys listed, want 1:\n%s", i, n, r.stdout)
		}
		if n := strings.Count(r.stdout, "  retired "); n != want-1 {
			t.Errorf("rotate %d: %d retired keys listed, want %d:\n%s", i, n, want-1, r.stdout)
		}
	}
	st := openData(t, data)
	keys, err := st.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("%d stored keys, want 3", len(keys))
	}
	current := 0
	for _, k := range keys {
		if k.Retired.IsZero() {
			current++
			r := runCLI(t, data, "", "keys", "list")
			if lines := strings.Split(r.stdout, "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], k.KID+" ") ||
				!strings.Contains(lines[1], "current") {
				t.Errorf("keys list does not show the current key %s first:\n%s", k.KID, r.stdout)
			}
		}
	}
	if current != 1 {
		t.Errorf("%d current keys stored, want 1", current)
	}
	if r := runCLI(t, data, "", "keys", "list", "extra"); r.code != 2 {
		t.Errorf("keys list extra: exit %d, want 2", r.code)
	}
}
