package gateway

import (
	"testing"
	"time"

	"headgate/internal/fakeclock"
	"headgate/session"
)

// fakeClock moves only when the test advances it, so that "the window has passed" is an
// Advance, not a sleep (see fakeclock.Clock for how its ticks are delivered).
type fakeClock struct{ *fakeclock.Clock }

// newFakeClock returns a clock standing at the real time, which it then leaves behind.
func newFakeClock(t testing.TB) *fakeClock {
	return &fakeClock{fakeclock.New(t, time.Now())}
}

// timing returns the gateway's default Timing on this clock.
func (c *fakeClock) timing() Timing {
	return Timing{Now: c.Now, Tick: c.Tick}
}

// storeTiming returns the session stores' default Timing on this clock.
func (c *fakeClock) storeTiming() session.Timing {
	return session.Timing{Now: c.Now, Tick: c.Tick}
}
