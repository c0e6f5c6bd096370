package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/store"
)

// RealTimeScale is how many times faster than the suite's clock
// RunEphemeralRealTime runs: RunEphemeral's one-minute ttl becomes 6 s of
// wall-clock time and its one-second margins 100 ms - slack for a loaded CI
// machine running other test packages at the same time.
const RealTimeScale = 10

// RunEphemeralRealTime runs the RunEphemeral suite, case for case, against a
// backend whose expiry follows the wall clock (Redis) and so cannot read the
// suite's FakeClock. Each store newEph returns is wrapped so that every ttl
// passed to it is divided by RealTimeScale, and before each call the wrapper
// sleeps for the time the suite advanced its clock since the previous call,
// divided by RealTimeScale. The sleep is measured from the end of the previous
// call, so an "after ttl" case has at least its scaled margin of real time to
// expire; a "just before ttl" case has its scaled margin (100 ms) to absorb
// scheduling and round-trip delays.
func RunEphemeralRealTime(t *testing.T, newEph func(t *testing.T) store.Ephemeral) {
	RunEphemeral(t, func(t *testing.T, clock store.Clock) store.Ephemeral {
		return &scaledEphemeral{e: newEph(t), clock: clock, last: clock.Now()}
	})
}

// scaledEphemeral maps the suite's fake timeline onto real time.
type scaledEphemeral struct {
	e     store.Ephemeral
	clock store.Clock

	mu   sync.Mutex
	last time.Time // fake time of the previous call
}

// sync sleeps for the scaled time the fake clock moved since the previous
// call. Concurrent callers wait for one another's sleep (the suite never
// advances its clock during a concurrent burst, so only one sleeps).
func (s *scaledEphemeral) sync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if d := now.Sub(s.last); d > 0 {
		time.Sleep(scale(d))
	}
	s.last = now
}

func scale(d time.Duration) time.Duration { return d / RealTimeScale }

func (s *scaledEphemeral) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	s.sync()
	return s.e.Put(ctx, key, val, scale(ttl))
}

func (s *scaledEphemeral) Get(ctx context.Context, key string) ([]byte, error) {
	s.sync()
	return s.e.Get(ctx, key)
}

func (s *scaledEphemeral) Take(ctx context.Context, key string) ([]byte, error) {
	s.sync()
	return s.e.Take(ctx, key)
}

func (s *scaledEphemeral) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	s.sync()
	return s.e.Claim(ctx, key, scale(ttl))
}

func (s *scaledEphemeral) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	s.sync()
	return s.e.Incr(ctx, key, scale(ttl))
}

func (s *scaledEphemeral) Delete(ctx context.Context, key string) error {
	s.sync()
	return s.e.Delete(ctx, key)
}
