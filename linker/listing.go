package linker

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// sharedListing is Headscale's whole user list, indexed: asked for by one caller at a time and
// shared by every caller waiting meanwhile, then reused for maxAge by the identities that come
// after, so a burst of sign-ins costs Headscale one listing. It is safe for concurrent use.
type sharedListing struct {
	hs     *Headscale
	maxAge time.Duration
	timing Timing

	flight singleflight.Group // one listing at a time, under the key listingFlight

	mu     sync.Mutex
	latest *directory // the latest listing while it may still be reused, else nil
}

// listingFlight is the one key of sharedListing.flight.
const listingFlight = "users"

func newSharedListing(hs *Headscale, maxAge time.Duration, t Timing) *sharedListing {
	return &sharedListing{hs: hs, maxAge: maxAge, timing: t}
}

// get returns a listing requested after notBefore: the latest one if it is still young enough,
// else a new one, shared with every concurrent caller. The listing goes on when ctx ends, for
// the others that wait for it; get then returns ctx's error.
func (s *sharedListing) get(ctx context.Context, notBefore time.Time) (*directory, error) {
	shared := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		if d := s.reusable(notBefore); d != nil {
			return d, nil
		}
		ch := s.flight.DoChan(listingFlight, func() (any, error) { return s.list(shared, notBefore) })
		select {
		case r := <-ch:
			if r.Err != nil {
				return nil, r.Err
			}
			// A flight started for another caller may have reused a listing older than what
			// this caller already knows; one more round then lists anew.
			if d := r.Val.(*directory); d.listedAt.After(notBefore) || attempt > 0 {
				return d, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// list asks Headscale for every user and indexes the answer.
func (s *sharedListing) list(ctx context.Context, notBefore time.Time) (*directory, error) {
	// A listing may have finished between the caller's look and the start of this flight.
	if d := s.reusable(notBefore); d != nil {
		return d, nil
	}
	start := s.timing.Now()
	users, err := s.hs.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	d := newDirectory(users, start)
	s.mu.Lock()
	s.latest = d
	s.mu.Unlock()
	// Let a large listing go once it may no longer be reused.
	s.timing.AfterFunc(start.Add(s.maxAge).Sub(s.timing.Now()), func() {
		s.mu.Lock()
		if s.latest == d {
			s.latest = nil
		}
		s.mu.Unlock()
	})
	return d, nil
}

// reusable returns the latest listing if it was requested after notBefore and less than maxAge
// ago, else nil.
func (s *sharedListing) reusable(notBefore time.Time) *directory {
	s.mu.Lock()
	d := s.latest
	s.mu.Unlock()
	if d != nil && d.listedAt.After(notBefore) && s.timing.Now().Sub(d.listedAt) < s.maxAge {
		return d
	}
	return nil
}
