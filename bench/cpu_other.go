//go:build !unix

package bench

// cpuSeconds is the CPU time the process has used so far: 0 here, where it
// is not read.
func cpuSeconds() float64 { return 0 }
