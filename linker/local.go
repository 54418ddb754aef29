package linker

import (
	"sync"
	"time"
)

// maxLocal is how many links an instance keeps in process; past it, stale ones are dropped
// first.
const maxLocal = 100_000

// localLinks are the links this instance resolved, answered on every request without I/O. A link
// answers while it is fresh or, after Headscale failed, until its quiet window ends; when
// either window is, is the Linker's call, made once as the link is put. It is safe for
// concurrent use.
type localLinks struct {
	// max bounds the number of links; New sets it to maxLocal, tests lower it.
	max int

	mu    sync.RWMutex
	links map[identityKey]*entry
}

// identityKey keys the in-process links. A pair rather than issuer+"\x00"+subject, so that a
// lookup builds no string.
type identityKey struct{ issuer, subject string }

// entry is an in-process link. Entries are replaced, never changed, so readers need no lock
// once they hold one.
type entry struct {
	link       Link
	freshUntil time.Time
	// quietUntil is set after Headscale failed: until then the stale link answers and
	// Headscale is not asked for this identity.
	quietUntil time.Time
}

// answers reports whether e may answer at now without asking anyone: it is fresh, or Headscale
// was just found down.
func (e *entry) answers(now time.Time) bool {
	return now.Before(e.freshUntil) || now.Before(e.quietUntil)
}

func newLocalLinks(max int) *localLinks {
	return &localLinks{max: max, links: make(map[identityKey]*entry)}
}

// get returns the entry of k, or nil. The entry may no longer answer: the caller checks.
func (s *localLinks) get(k identityKey) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.links[k]
}

// put keeps e for k, replacing what was there; now is when, for pruning.
func (s *localLinks) put(k identityKey, e *entry, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.links[k]; !ok && len(s.links) >= s.max {
		s.pruneLocked(now)
	}
	s.links[k] = e
}

// pruneLocked drops the links that answer for nothing at now (the shared cache still keeps them
// for an outage), then, if that is not enough, arbitrary ones, down to three quarters of max so
// that pruning stays rare.
func (s *localLinks) pruneLocked(now time.Time) {
	for k, e := range s.links {
		if !e.answers(now) {
			delete(s.links, k)
		}
	}
	target := s.max * 3 / 4
	for k := range s.links {
		if len(s.links) <= target {
			break
		}
		delete(s.links, k)
	}
}
