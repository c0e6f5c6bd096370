package auth

import "testing"

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"IPv4 with port", "127.0.0.1:5000", true},
		{"other 127/8 address", "127.8.9.10:1", true},
		{"IPv6 with port", "[::1]:5000", true},
		{"bare IPv6", "::1", true},
		{"bare IPv4", "127.0.0.1", true},
		{"localhost name", "localhost", true},
		{"localhost name with port", "LOCALHOST:8080", true},
		{"private address", "10.0.0.1:1", false},
		{"public address", "203.0.113.7:5000", false},
		{"IPv4-mapped public", "[::ffff:203.0.113.7]:1", false},
		{"name that starts like localhost", "localhost.evil.example", false},
		{"garbage", "not-an-address", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsLoopback(tc.in); got != tc.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
