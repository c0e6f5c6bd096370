package auth

import (
	"strconv"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for want, addrs := range map[bool][]string{
		// loopback IPs with and without a port, any of 127/8, the name
		// localhost in any case
		true: {"127.0.0.1:5000", "127.8.9.10:1", "[::1]:5000", "::1", "127.0.0.1", "localhost", "LOCALHOST:8080"},
		// private and public addresses, an IPv4-mapped public address, a
		// name that only starts like localhost, garbage
		false: {"10.0.0.1:1", "203.0.113.7:5000", "[::ffff:203.0.113.7]:1", "localhost.evil.example", "not-an-address", ""},
	} {
		for _, in := range addrs {
			t.Run(strconv.Quote(in), func(t *testing.T) {
				if got := IsLoopback(in); got != want {
					t.Errorf("IsLoopback(%q) = %v, want %v", in, got, want)
				}
			})
		}
	}
}
