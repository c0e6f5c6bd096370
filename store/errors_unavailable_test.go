package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "sql error " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

func TestIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"marked", fmt.Errorf("redis: get: %w: %w", ErrUnavailable, errors.New("dial")), true},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"cut mid-reply", fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true},
		{"admin shutdown", sqlStateErr("57P01"), true},
		{"connection failure", sqlStateErr("08006"), true},
		{"unique violation", sqlStateErr("23505"), false},
		{"caller deadline", fmt.Errorf("search: %w", context.DeadlineExceeded), false},
		{"caller cancel", context.Canceled, false},
		{"not found", ErrNotFound, false},
		{"plain", errors.New("boom"), false},
	}
	for _, tc := range tests {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("%s: IsUnavailable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
