package linker

import (
	"testing"
	"time"

	"headgate/internal/fakeclock"
)

// fakeClock moves only when a test advances it, so that "past the TTL" is Advance(ttl) rather
// than a sleep.
type fakeClock struct{ *fakeclock.Clock }

func newFakeClock(t testing.TB) *fakeClock {
	return &fakeClock{fakeclock.New(t, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))}
}

// timing is the default Timing on this clock.
func (c *fakeClock) timing() Timing {
	return Timing{Now: c.Now, AfterFunc: c.AfterFunc}
}
