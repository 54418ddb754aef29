package gateway

import (
	"cmp"
	"time"
)

// Timing is the gateway's clock and the intervals it waits. Production uses DefaultTiming; a
// test hands in a clock of its own that it moves by hand, so that it never sleeps through a
// window. A zero field takes its value from DefaultTiming.
type Timing struct {
	// Now tells the time: when a sign-in began and a session was issued, whether a token has
	// expired, how long ago the provider was last asked.
	Now func() time.Time
	// Tick returns a channel that receives the time every d, until the function it returns is
	// called. It paces the checks of the streams' sessions.
	Tick func(d time.Duration) (<-chan time.Time, func())

	// Rediscover is how long a failed discovery is remembered before the next sign-in tries
	// again, so that an outage does not turn every sign-in into a discovery request. Default 5s.
	Rediscover time.Duration
	// Probe is how long a check that the provider answers is trusted before a sign-in asks
	// again; a failed check is trusted for ProbeFailed only, so that sign-ins resume as soon as
	// the provider is back. Default 1s and 250ms.
	Probe, ProbeFailed time.Duration
	// LogoutKeysRefresh is the shortest time between two fetches of the provider's keys for
	// back-channel logout tokens. Default 10s.
	LogoutKeysRefresh time.Duration
	// StreamCheck is how often the session of a stream is checked. A check is answered from
	// the store's local view, which revocations reach within a second: with the default of 1s,
	// a stream of an ended session stops within about two seconds.
	StreamCheck time.Duration
}

// DefaultTiming returns the system clock and the intervals headgate runs with.
func DefaultTiming() Timing {
	return Timing{
		Now:               time.Now,
		Tick:              tick,
		Rediscover:        5 * time.Second,
		Probe:             time.Second,
		ProbeFailed:       250 * time.Millisecond,
		LogoutKeysRefresh: 10 * time.Second,
		StreamCheck:       time.Second,
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
	t.Rediscover = cmp.Or(t.Rediscover, d.Rediscover)
	t.Probe = cmp.Or(t.Probe, d.Probe)
	t.ProbeFailed = cmp.Or(t.ProbeFailed, d.ProbeFailed)
	t.LogoutKeysRefresh = cmp.Or(t.LogoutKeysRefresh, d.LogoutKeysRefresh)
	t.StreamCheck = cmp.Or(t.StreamCheck, d.StreamCheck)
	return t
}
