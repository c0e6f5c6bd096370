package server

import (
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)

	if got := ApplyMemoryLimit(Config{MemoryLimitMB: 200}); got != 200<<20 {
		t.Errorf("ApplyMemoryLimit(200) = %d", got)
	}
	if now := debug.SetMemoryLimit(-1); now != 200<<20 {
		t.Errorf("the runtime's limit is %d, want 200 MiB", now)
	}
	// 0 leaves the runtime's limit (GOMEMLIMIT's) in force.
	debug.SetMemoryLimit(123 << 20)
	if got := ApplyMemoryLimit(Config{}); got != 123<<20 {
		t.Errorf("ApplyMemoryLimit(0) = %d, want GOMEMLIMIT's 123 MiB", got)
	}
	if now := debug.SetMemoryLimit(-1); now != 123<<20 {
		t.Errorf("the runtime's limit is %d, want 123 MiB kept", now)
	}
}

func TestApplyGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	ApplyMemoryLimit(Config{GCPercent: 50})
	if now := debug.SetGCPercent(100); now != 50 {
		t.Errorf("GOGC is %d, want 50", now)
	}
	// 0 leaves the runtime's (GOGC's) in force.
	debug.SetGCPercent(170)
	ApplyMemoryLimit(Config{})
	if now := debug.SetGCPercent(100); now != 170 {
		t.Errorf("GOGC is %d, want 170 kept", now)
	}
}
