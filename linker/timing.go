package linker

import "time"

// Timing is the clock the linker's components read and the intervals they wait by that are not
// configuration. The zero Timing is the system clock with the default intervals; each zero field
// takes its default. Tests pass a clock they move themselves, so that "past the TTL" costs no
// waiting.
type Timing struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	// AfterFunc calls f in its own goroutine once d has passed on this clock; it is how a user
	// listing is let go once it may no longer be reused. Nil means time.AfterFunc.
	AfterFunc func(d time.Duration, f func())

	// RetryAfter is how long an identity answered from a stale link after a failed Headscale
	// call waits before Headscale is tried again for it, so an outage is not hammered.
	// Default 10s.
	RetryAfter time.Duration

	// KeepStale is how long the shared cache keeps a link past its freshness, to answer for an
	// identity whose session is already proven while Headscale is down. Default 24h.
	KeepStale time.Duration

	// RelistAfter is how long the linker looks users up one by one after Headscale could not
	// send its whole list, before it tries the list again (users may have been deleted
	// meanwhile). Default 10m.
	RelistAfter time.Duration
}

// withDefaults returns t with every zero field set to its default. It is the one place the
// defaults live.
func (t Timing) withDefaults() Timing {
	if t.Now == nil {
		t.Now = time.Now
	}
	if t.AfterFunc == nil {
		t.AfterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	if t.RetryAfter == 0 {
		t.RetryAfter = 10 * time.Second
	}
	if t.KeepStale == 0 {
		t.KeepStale = 24 * time.Hour
	}
	if t.RelistAfter == 0 {
		t.RelistAfter = 10 * time.Minute
	}
	return t
}
