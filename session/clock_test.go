package session

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when the test advances it, so that "the window has
// passed" is an Advance, not a sleep. Its tickers deliver a tick when Advance passes their next
// one (a single tick however far it moves, as a time.Ticker drops the ticks nobody took), and
// Advance returns only once every such tick has been received or its ticker stopped: after
// one Advance the work a tick starts has begun, after a second one it has ended.
type fakeClock struct {
	t       testing.TB
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	c       chan time.Time
	every   time.Duration
	next    time.Time
	stopped chan struct{}
}

// newFakeClock returns a clock standing at the real time, which it then leaves behind.
func newFakeClock(t testing.TB) *fakeClock {
	return &fakeClock{t: t, now: time.Now()}
}

// timing returns the default Timing on this clock.
func (c *fakeClock) timing() Timing {
	return Timing{Now: c.Now, Tick: c.Tick}
}

// Now is Timing.Now.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Tick is Timing.Tick.
func (c *fakeClock) Tick(d time.Duration) (<-chan time.Time, func()) {
	ft := &fakeTicker{c: make(chan time.Time), every: d, stopped: make(chan struct{})}
	c.mu.Lock()
	ft.next = c.now.Add(d)
	c.tickers = append(c.tickers, ft)
	c.mu.Unlock()
	var once sync.Once
	return ft.c, func() {
		once.Do(func() {
			c.mu.Lock()
			c.tickers = slices.DeleteFunc(c.tickers, func(x *fakeTicker) bool { return x == ft })
			c.mu.Unlock()
			close(ft.stopped)
		})
	}
}

// Advance moves the clock on by d and delivers the ticks it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTicker
	for _, ft := range c.tickers {
		if !ft.next.After(now) {
			due = append(due, ft)
			ft.next = ft.next.Add((now.Sub(ft.next)/ft.every + 1) * ft.every)
		}
	}
	c.mu.Unlock()
	for _, ft := range due {
		select {
		case ft.c <- now:
		case <-ft.stopped:
		case <-time.After(10 * time.Second):
			c.t.Fatalf("a tick at %v was not taken within 10s", now)
		}
	}
}
