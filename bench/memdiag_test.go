package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMemDiag: --memprofile writes the scenario's heap profile and prints
// the memory breakdown of its highest sample; without it, nothing.
func TestMemDiag(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	prefix := filepath.Join(t.TempDir(), "h")
	var out bytes.Buffer
	end := memDiag(prefix, "read-hot", &out)
	time.Sleep(700 * time.Millisecond) // one sample
	end()
	if !strings.Contains(out.String(), "read-hot memory at its highest RSS: anon ") || !strings.Contains(out.String(), "Go heap in use") {
		t.Errorf("printed %q", out.String())
	}
	if fi, err := os.Stat(prefix + ".read-hot.heap"); err != nil || fi.Size() == 0 {
		t.Errorf("heap profile: %v", err)
	}

	out.Reset()
	memDiag("", "read-hot", &out)()
	if out.Len() != 0 {
		t.Errorf("printed %q without --memprofile", out.String())
	}
}
