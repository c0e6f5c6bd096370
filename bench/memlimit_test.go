package bench

import (
	"runtime/debug"
	"testing"

	"github.com/ketabridge/ketabridge/server"
)

// TestGatewayAtRestAppliesMemoryLimit: the benchmark and the soak apply the
// gateway's --memory-limit-mb as serve does (gatewayAtRest), and 0 leaves
// the runtime without one.
func TestGatewayAtRestAppliesMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	if got := gatewayAtRest(server.Config{MemoryLimitMB: 700}); got != 700<<20 {
		t.Errorf("gatewayAtRest returned %d, want %d", got, 700<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Errorf("the runtime's limit is %d, want %d", got, 700<<20)
	}
	debug.SetMemoryLimit(1 << 40)
	gatewayAtRest(server.Config{})
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("with no limit configured the runtime's limit became %d, want it left at %d", got, int64(1<<40))
	}
}
