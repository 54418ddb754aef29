package session

import (
	"cmp"
	"context"
	"time"
)

// Timing is the clock of a session store and the intervals it waits. Production uses
// DefaultTiming; a test shortens an interval, or hands in a clock of its own that it moves by
// hand, so that it never sleeps through a window. A zero field takes its value from
// DefaultTiming. PingInterval, PingTimeout and FlushTimeout bound waits on the network, which
// pass in real time whatever the clock says.
type Timing struct {
	// Now tells the time: whether a session has expired, how long a failure or a live answer
	// is remembered.
	Now func() time.Time
	// Tick returns a channel that receives the time every d, until the function it returns is
	// called. It paces the background work of Run and its waits.
	Tick func(d time.Duration) (<-chan time.Time, func())

	// DownFor is how long Redis is not tried after a failure, so that requests are not each
	// held up by a timeout. Default 1s.
	DownFor time.Duration
	// UnsubscribedTrust is how long a live answer is trusted while there is no subscription to
	// the revocation channel: the longest a sign-out elsewhere may take to reach this
	// instance. Default 1s.
	UnsubscribedTrust time.Duration
	// Tombstone is how long a revocation of a session unknown here is remembered; it only has
	// to outlast a lookup in flight. Default 1m.
	Tombstone time.Duration
	// PingInterval is how long the subscription may be quiet before it is pinged: a quiet
	// connection may be dead without an error. Default 1s.
	PingInterval time.Duration
	// PingTimeout is how long a subscription, or a ping of it, may go unanswered before it is
	// given up and made again. Default 1s.
	PingTimeout time.Duration
	// ResubscribeMin and ResubscribeMax bound the pause before subscribing again: it starts at
	// ResubscribeMin after a subscription that was established, and doubles after each
	// attempt that fails, up to ResubscribeMax. Default 50ms and 1s.
	ResubscribeMin, ResubscribeMax time.Duration
	// RetryInterval is how often revocations that Redis has not heard of are tried again.
	// Default 1s.
	RetryInterval time.Duration
	// PruneInterval is how often expired records and entries are dropped. Default 1m.
	PruneInterval time.Duration
	// FlushTimeout bounds the last attempt, when Run stops, to apply the revocations still
	// pending. Default 2s.
	FlushTimeout time.Duration
}

// DefaultTiming returns the system clock and the intervals headgate runs with.
func DefaultTiming() Timing {
	return Timing{
		Now:               time.Now,
		Tick:              tick,
		DownFor:           time.Second,
		UnsubscribedTrust: time.Second,
		Tombstone:         time.Minute,
		PingInterval:      time.Second,
		PingTimeout:       time.Second,
		ResubscribeMin:    50 * time.Millisecond,
		ResubscribeMax:    time.Second,
		RetryInterval:     time.Second,
		PruneInterval:     time.Minute,
		FlushTimeout:      2 * time.Second,
	}
}

// tick is the system clock's Tick.
func tick(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// withDefaults returns t with every zero field taken from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	if t.Now == nil {
		t.Now = d.Now
	}
	if t.Tick == nil {
		t.Tick = d.Tick
	}
	t.DownFor = cmp.Or(t.DownFor, d.DownFor)
	t.UnsubscribedTrust = cmp.Or(t.UnsubscribedTrust, d.UnsubscribedTrust)
	t.Tombstone = cmp.Or(t.Tombstone, d.Tombstone)
	t.PingInterval = cmp.Or(t.PingInterval, d.PingInterval)
	t.PingTimeout = cmp.Or(t.PingTimeout, d.PingTimeout)
	t.ResubscribeMin = cmp.Or(t.ResubscribeMin, d.ResubscribeMin)
	t.ResubscribeMax = cmp.Or(t.ResubscribeMax, d.ResubscribeMax)
	t.RetryInterval = cmp.Or(t.RetryInterval, d.RetryInterval)
	t.PruneInterval = cmp.Or(t.PruneInterval, d.PruneInterval)
	t.FlushTimeout = cmp.Or(t.FlushTimeout, d.FlushTimeout)
	return t
}

// sleep waits until d has passed on t's clock and reports true, or reports false as soon as
// ctx ends.
func (t Timing) sleep(ctx context.Context, d time.Duration) bool {
	c, stop := t.Tick(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}
