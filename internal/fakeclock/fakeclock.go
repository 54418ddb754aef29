// Package fakeclock is a clock for tests that moves only when the test advances it, so that
// "the window has passed" is an Advance, not a sleep. The gateway, session and linker tests
// share it through their Timing values (Now, Tick, AfterFunc).
package fakeclock

import (
	"cmp"
	"slices"
	"sync"
	"testing"
	"time"
)

// Clock is a fake clock. Its tickers deliver a tick when Advance passes their next one (a single
// tick however far it moves, as a time.Ticker drops the ticks nobody took), and Advance returns
// only once every such tick has been received or its ticker stopped: after one Advance the
// work a tick starts has begun, after a second one it has ended. Its timers (AfterFunc) run in
// the goroutine that advances the clock, earliest first. It is safe for concurrent use.
type Clock struct {
	t       testing.TB
	mu      sync.Mutex
	now     time.Time
	tickers []*ticker
	timers  []timer
}

type ticker struct {
	c       chan time.Time
	every   time.Duration
	next    time.Time
	stopped chan struct{}
}

type timer struct {
	at time.Time
	f  func()
}

// New returns a clock standing at start, which it then leaves behind only when advanced.
func New(t testing.TB, start time.Time) *Clock {
	return &Clock{t: t, now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Tick returns a channel that receives a tick every d of this clock's time, and a function
// that stops it.
func (c *Clock) Tick(d time.Duration) (<-chan time.Time, func()) {
	ft := &ticker{c: make(chan time.Time), every: d, stopped: make(chan struct{})}
	c.mu.Lock()
	ft.next = c.now.Add(d)
	c.tickers = append(c.tickers, ft)
	c.mu.Unlock()
	var once sync.Once
	return ft.c, func() {
		once.Do(func() {
			c.mu.Lock()
			c.tickers = slices.DeleteFunc(c.tickers, func(x *ticker) bool { return x == ft })
			c.mu.Unlock()
			close(ft.stopped)
		})
	}
}

// AfterFunc calls f when an Advance takes the clock d past now.
func (c *Clock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, timer{at: c.now.Add(d), f: f})
}

// Advance moves the clock on by d, runs the timers that came due and delivers the ticks it
// passes.
func (c *Clock) Advance(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*ticker
	for _, ft := range c.tickers {
		if !ft.next.After(now) {
			due = append(due, ft)
			ft.next = ft.next.Add((now.Sub(ft.next)/ft.every + 1) * ft.every)
		}
	}
	var run, pending []timer
	for _, t := range c.timers {
		if t.at.After(now) {
			pending = append(pending, t)
		} else {
			run = append(run, t)
		}
	}
	c.timers = pending
	c.mu.Unlock()
	slices.SortStableFunc(run, func(a, b timer) int { return cmp.Compare(a.at.UnixNano(), b.at.UnixNano()) })
	for _, t := range run {
		t.f()
	}
	for _, ft := range due {
		select {
		case ft.c <- now:
		case <-ft.stopped:
		case <-time.After(10 * time.Second):
			c.t.Fatalf("a tick at %v was not taken within 10s", now)
		}
	}
}
