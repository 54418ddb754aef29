// Package linker turns an OIDC identity into a Headscale user. It owns a small client of
// Headscale's HTTP API, the strategies that match an identity to a user (by the providerId
// Headscale derives from the identity, or by a verified email), and the link cache: in process
// for the per-request path, and shared between instances through Redis.
package linker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrUnavailable is wrapped by Resolve's error when Headscale cannot answer and no earlier
// answer is kept for the identity.
var ErrUnavailable = errors.New("headscale unavailable")

// Identity is a person as proven by the identity provider.
type Identity struct {
	Issuer, Subject string
	Email           string
	EmailVerified   bool
	// PreferredUsername is the preferred_username claim. It is only used to find a user when
	// Headscale has too many users to list (see ErrListingTooLarge): Headscale names an OIDC
	// user after it.
	PreferredUsername string
}

// Link is what an identity resolved to. A Link with an empty UserID says the identity has no
// Headscale user.
type Link struct {
	UserID, UserName, DisplayName, Email string

	// Method is the strategy that found the user, "provider_id" or "email"; "" when unlinked.
	Method string

	// NameSharedWith lists the IDs of the other Headscale users whose name is the same as
	// UserName's (compared as nameKey does). Headscale does not keep names unique, so when
	// this is not empty the name cannot tell this person from others, and the gateway lets
	// nobody in under it.
	NameSharedWith []string

	// Reason says, for logs, why an identity has no user: what each strategy saw, e.g.
	// "no user with this provider id; ambiguous email (2 users)".
	Reason string

	// ResolvedAt is when Headscale was asked. It travels with the link through the shared
	// cache so that every instance expires a link at the same moment.
	ResolvedAt time.Time
}

// Linked reports whether the identity has a Headscale user.
func (l Link) Linked() bool { return l.UserID != "" }

// NameShared reports whether the linked user's name is also another Headscale user's.
func (l Link) NameShared() bool { return len(l.NameSharedWith) > 0 }

// cacheVersion starts every shared cache key. It changes when what a cached link says
// changes, so that links an older version cached (here: before NameSharedWith) are never
// taken for complete; they are resolved anew instead.
const cacheVersion = "v2:"

// Tuning that is not configuration.
const (
	// retryAfter is how long an identity answered from a stale link after a failed Headscale
	// call waits before Headscale is tried again for it, so an outage is not hammered.
	retryAfter = 10 * time.Second

	// keepStale is how long the shared cache keeps a link past its freshness, to answer for
	// an identity whose session is already proven while Headscale is down.
	keepStale = 24 * time.Hour

	// maxLocal bounds the in-process links; past it, stale ones are dropped first.
	maxLocal = 100_000
)

// Linker resolves identities to Headscale users. It is safe for concurrent use and meant to be
// asked on every request: a link it has seen and still trusts costs no I/O.
type Linker struct {
	cfg   Config
	hs    *Headscale
	cache Cache
	// listTooLargeUntil (Unix nanoseconds) is set when Headscale could not send its whole user
	// list: until then, uncached identities are looked up one by one without trying the list.
	listTooLargeUntil atomic.Int64
	// cacheTag starts every shared cache key: cacheVersion, then the strategies when they are
	// not the default, so that instances configured differently never reuse each other's links.
	cacheTag string

	// retryAfter and maxLocal are the constants of the same names; tests shorten them.
	retryAfter time.Duration
	maxLocal   int

	mu    sync.RWMutex
	local map[identityKey]*entry

	resolving singleflight.Group // one resolution per identity at a time
	listing   singleflight.Group // one user listing at a time

	dirMu sync.Mutex
	dir   *directory // the latest listing while it may still be reused, else nil
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

// New returns a Linker that matches identities as cfg says (it should have passed Validate;
// zero fields take their defaults), asks hs, and shares links through cache. A nil cache means
// a MemoryCache.
func New(cfg Config, hs *Headscale, cache Cache) *Linker {
	if cache == nil {
		cache = NewMemoryCache()
	}
	cfg.SetDefaults()
	tag := cacheVersion
	if len(cfg.Match) != 1 || cfg.Match[0] != "provider_id" {
		tag += strings.Join(cfg.Match, "+") + ":"
	}
	return &Linker{
		cfg:        cfg,
		cacheTag:   tag,
		hs:         hs,
		cache:      cache,
		retryAfter: retryAfter,
		maxLocal:   maxLocal,
		local:      make(map[identityKey]*entry),
	}
}

// AllowUnlinked reports whether a person without a Headscale user may pass (unlinked: allow).
func (l *Linker) AllowUnlinked() bool { return l.cfg.Unlinked == "allow" }

// Resolve returns the Headscale user of id. A link this instance resolved and still trusts (for
// TTL, or NegativeTTL when unlinked) is answered from memory without I/O. Otherwise the shared
// cache is asked, then Headscale, with one user listing shared by all concurrent callers and
// reused for other identities for a few seconds. The answer, linked or not, is cached.
//
// Links are keyed by issuer and subject: a changed email claim counts once the link is re-checked.
//
// When Headscale cannot answer, a stale link for id (kept for a day past its TTL) is returned,
// and Headscale is not asked again for id for 10 seconds; without one, the error wraps
// ErrUnavailable. Errors are never cached. No call waits much longer than the Headscale timeout.
func (l *Linker) Resolve(ctx context.Context, id Identity) (Link, error) {
	k := identityKey{id.Issuer, id.Subject}
	if e := l.lookupLocal(k); e != nil && e.answers(time.Now()) {
		return e.link, nil
	}
	return l.resolveSlow(ctx, id, k)
}

func (l *Linker) resolveSlow(ctx context.Context, id Identity, k identityKey) (Link, error) {
	if id.Issuer == "" || id.Subject == "" {
		return Link{}, errors.New("resolve headscale user: identity has no issuer or subject")
	}
	// The work is shared by every caller waiting for this identity, so it must not end when
	// the first caller's request does; each caller still stops waiting when its own ends.
	shared := context.WithoutCancel(ctx)
	ch := l.resolving.DoChan(id.Issuer+"\x00"+id.Subject, func() (any, error) {
		ctx, cancel := context.WithTimeout(shared, l.hs.timeout)
		defer cancel()
		return l.refresh(ctx, id, k)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Link{}, r.Err
		}
		return r.Val.(Link), nil
	case <-ctx.Done():
		if e := l.lookupLocal(k); e != nil {
			return e.link, nil
		}
		return Link{}, fmt.Errorf("resolve headscale user: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// refresh resolves id from the shared cache or Headscale and remembers the answer.
func (l *Linker) refresh(ctx context.Context, id Identity, k identityKey) (Link, error) {
	now := time.Now()
	stale := l.lookupLocal(k)
	if stale != nil && stale.answers(now) {
		// Another flight for this identity finished just before this one started.
		return stale.link, nil
	}
	var staleLink *Link
	if stale != nil {
		staleLink = &stale.link
	}
	pid := ProviderID(id.Issuer, id.Subject)
	// A cache that cannot answer is skipped: Headscale can.
	if cached, ok, err := l.cache.Get(ctx, l.cacheTag+pid); err == nil && ok {
		if now.Before(l.freshUntil(cached)) {
			l.remember(k, cached, time.Time{})
			return cached, nil
		}
		if staleLink == nil || cached.ResolvedAt.After(staleLink.ResolvedAt) {
			staleLink = &cached
		}
	}

	var notBefore time.Time
	if staleLink != nil {
		notBefore = staleLink.ResolvedAt
	}
	var d *directory
	var err error
	if now.UnixNano() < l.listTooLargeUntil.Load() {
		d, err = l.lookup(ctx, id)
	} else if d, err = l.directory(ctx, notBefore); errors.Is(err, ErrListingTooLarge) {
		// A failed listing costs Headscale its whole work: try it again only now and then.
		l.listTooLargeUntil.Store(time.Now().Add(relistAfter).UnixNano())
		d, err = l.lookup(ctx, id)
	}
	if err != nil {
		if staleLink != nil {
			// The session behind this identity is already proven: fail soft.
			l.remember(k, *staleLink, time.Now().Add(l.retryAfter))
			return *staleLink, nil
		}
		return Link{}, fmt.Errorf("resolve headscale user: %w: %w", ErrUnavailable, err)
	}
	link := d.match(l.cfg.Match, id, pid)
	l.remember(k, link, time.Time{})
	// A link that cannot be shared still answers here; the next instance asks Headscale.
	_ = l.cache.Set(ctx, l.cacheTag+pid, link, time.Until(l.freshUntil(link).Add(keepStale)))
	return link, nil
}

// relistAfter is how long the linker looks users up one by one after Headscale could not send
// its whole list, before it tries the list again (users may have been deleted meanwhile).
const relistAfter = 10 * time.Minute

// lookup builds a directory of just the users that could be id's, for a Headscale with too many
// users to list: those with id's email (when email matching applies) and those named after id's
// preferred username or email (an OIDC user's name). The strategies then apply as usual; the
// email's uniqueness is judged among exact (case-sensitive) matches only.
func (l *Linker) lookup(ctx context.Context, id Identity) (*directory, error) {
	start := time.Now()
	type query struct{ field, value string }
	var queries []query
	seen := map[query]bool{}
	add := func(field, value string) {
		if q := (query{field, value}); value != "" && !seen[q] {
			seen[q] = true
			queries = append(queries, q)
		}
	}
	for _, m := range l.cfg.Match {
		switch m {
		case "provider_id":
			add("name", id.PreferredUsername)
			add("name", id.Email)
		case "email":
			if id.EmailVerified {
				add("email", id.Email)
			}
		}
	}
	var users []User
	ids := map[string]bool{}
	find := func(q query) error {
		found, err := l.hs.FindUsers(ctx, q.field, q.value)
		if err != nil {
			return err
		}
		for _, u := range found {
			if !ids[u.ID] {
				ids[u.ID] = true
				users = append(users, u)
			}
		}
		return nil
	}
	for _, q := range queries {
		if err := find(q); err != nil {
			return nil, err
		}
	}
	// The user found must be the only one with its name (see Link.NameSharedWith): ask for
	// every user of that name. Headscale's filter is exact, so only the full listing also
	// finds names that differ in case or Unicode form.
	d := newDirectory(users, start)
	if link := d.match(l.cfg.Match, id, ProviderID(id.Issuer, id.Subject)); link.Linked() {
		if q := (query{"name", link.UserName}); !seen[q] {
			if err := find(q); err != nil {
				return nil, err
			}
			d = newDirectory(users, start)
		}
	}
	return d, nil
}

// directory returns a user listing requested after notBefore: the latest one if it is still
// young enough, else a new one, shared with every concurrent caller.
func (l *Linker) directory(ctx context.Context, notBefore time.Time) (*directory, error) {
	shared := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		if d := l.reusableDirectory(notBefore); d != nil {
			return d, nil
		}
		ch := l.listing.DoChan("users", func() (any, error) { return l.list(shared, notBefore) })
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
func (l *Linker) list(ctx context.Context, notBefore time.Time) (*directory, error) {
	// A listing may have finished between the caller's look and the start of this flight.
	if d := l.reusableDirectory(notBefore); d != nil {
		return d, nil
	}
	start := time.Now()
	users, err := l.hs.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	d := newDirectory(users, start)
	l.dirMu.Lock()
	l.dir = d
	l.dirMu.Unlock()
	// Let a large listing go once it may no longer be reused.
	time.AfterFunc(time.Until(start.Add(l.hs.listMaxAge)), func() {
		l.dirMu.Lock()
		if l.dir == d {
			l.dir = nil
		}
		l.dirMu.Unlock()
	})
	return d, nil
}

func (l *Linker) reusableDirectory(notBefore time.Time) *directory {
	l.dirMu.Lock()
	d := l.dir
	l.dirMu.Unlock()
	if d != nil && d.listedAt.After(notBefore) && time.Since(d.listedAt) < l.hs.listMaxAge {
		return d
	}
	return nil
}

// freshUntil is when link stops being trusted.
func (l *Linker) freshUntil(link Link) time.Time {
	if link.Linked() {
		return link.ResolvedAt.Add(l.cfg.TTL)
	}
	return link.ResolvedAt.Add(l.cfg.NegativeTTL)
}

func (l *Linker) lookupLocal(k identityKey) *entry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.local[k]
}

// remember keeps link for k in process; a non-zero quietUntil holds off Headscale until then.
func (l *Linker) remember(k identityKey, link Link, quietUntil time.Time) {
	e := &entry{link: link, freshUntil: l.freshUntil(link), quietUntil: quietUntil}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.local[k]; !ok && len(l.local) >= l.maxLocal {
		l.pruneLocked(time.Now())
	}
	l.local[k] = e
}

// pruneLocked drops the links that answer for nothing (the shared cache still keeps them for
// an outage), then, if that is not enough, arbitrary ones, down to three quarters of maxLocal so
// that pruning stays rare.
func (l *Linker) pruneLocked(now time.Time) {
	for k, e := range l.local {
		if !e.answers(now) {
			delete(l.local, k)
		}
	}
	target := l.maxLocal * 3 / 4
	for k := range l.local {
		if len(l.local) <= target {
			break
		}
		delete(l.local, k)
	}
}
