package linker

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// fakeClock is a clock that moves only when a test advances it, so that "past the TTL" is
// Advance(ttl) rather than a sleep. It is safe for concurrent use.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
}

// timing is the default Timing on this clock.
func (c *fakeClock) timing() Timing {
	return Timing{Now: c.Now, AfterFunc: c.AfterFunc}
}

// Now returns the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f when an Advance takes the clock d past now, in the goroutine that advances
// it.
func (c *fakeClock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), f: f})
}

// Advance moves the clock on by d, then runs the timers that came due, earliest first.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due, pending []fakeTimer
	for _, t := range c.timers {
		if t.at.After(c.now) {
			pending = append(pending, t)
		} else {
			due = append(due, t)
		}
	}
	c.timers = pending
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b fakeTimer) int { return cmp.Compare(a.at.UnixNano(), b.at.UnixNano()) })
	for _, t := range due {
		t.f()
	}
}
