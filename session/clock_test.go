package session

import (
	"testing"
	"time"

	"headgate/internal/fakeclock"
)

// fakeClock moves only when the test advances it, so that "the window has passed" is an
// Advance, not a sleep (see fakeclock.Clock for how its ticks are delivered).
type fakeClock struct{ *fakeclock.Clock }

// newFakeClock returns a clock standing at the real time, which it then leaves behind.
func newFakeClock(t testing.TB) *fakeClock {
	return &fakeClock{fakeclock.New(t, time.Now())}
}

// timing returns the default Timing on this clock.
func (c *fakeClock) timing() Timing {
	return Timing{Now: c.Now, Tick: c.Tick}
}
