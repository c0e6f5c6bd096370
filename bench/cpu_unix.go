//go:build unix

package bench

import "syscall"

// cpuSeconds is the CPU time (user and system) the process has used so
// far; 0 where it cannot be read.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
