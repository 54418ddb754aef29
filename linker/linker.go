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

	// Method is the strategy that found the user, "provider_id" or "email", or "user_id" for
	// ResolveUser's links; "" when unlinked.
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

// Linker resolves identities to Headscale users. It is safe for concurrent use and meant to be
// asked on every request: a link it has seen and still trusts costs no I/O. Its tiers, each
// asked when the one before cannot answer: the links this instance resolved (localLinks), the
// cache shared by every instance (Cache), and Headscale's users (userSource).
type Linker struct {
	cfg Config
	// cacheTag starts every shared cache key: cacheVersion, then the strategies when they are
	// not the default, so that instances configured differently never reuse each other's links.
	cacheTag string
	// timeout bounds one resolution, shared cache included, as the Headscale timeout bounds one
	// Headscale call.
	timeout time.Duration
	timing  Timing

	local *localLinks
	cache Cache
	users *userSource

	resolving singleflight.Group // one resolution per identity at a time
}

// New returns a Linker that matches identities as cfg says (its defaults applied, see
// SetDefaults, and validated), asks hs, shares links through cache and tells time by t (the
// zero Timing: the system clock and the default intervals). A nil cache means a MemoryCache on
// t's clock.
func New(cfg Config, hs *Headscale, cache Cache, t Timing) *Linker {
	t = t.withDefaults()
	if cache == nil {
		cache = NewMemoryCache(t)
	}
	tag := cacheVersion
	if len(cfg.Match) != 1 || cfg.Match[0] != "provider_id" {
		tag += strings.Join(cfg.Match, "+") + ":"
	}
	return &Linker{
		cfg:      cfg,
		cacheTag: tag,
		timeout:  hs.timeout,
		timing:   t,
		local:    newLocalLinks(maxLocal),
		cache:    cache,
		users:    newUserSource(hs, cfg.Match, t),
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
// When Headscale cannot answer, a stale link for id (kept for Timing.KeepStale past its TTL) is
// returned, and Headscale is not asked again for id for Timing.RetryAfter; without one, the
// error wraps ErrUnavailable. Errors are never cached. No call waits much longer than the
// Headscale timeout.
func (l *Linker) Resolve(ctx context.Context, id Identity) (Link, error) {
	k := identityKey{id.Issuer, id.Subject}
	if e := l.local.get(k); e != nil && e.answers(l.timing.Now()) {
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
		ctx, cancel := context.WithTimeout(shared, l.timeout)
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
		if e := l.local.get(k); e != nil {
			return e.link, nil
		}
		return Link{}, fmt.Errorf("resolve headscale user: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// refresh resolves id from the shared cache or Headscale and remembers the answer.
func (l *Linker) refresh(ctx context.Context, id Identity, k identityKey) (Link, error) {
	now := l.timing.Now()
	stale := l.local.get(k)
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
	d, err := l.users.find(ctx, id, notBefore)
	if err != nil {
		if staleLink != nil {
			// The session behind this identity is already proven: fail soft.
			l.remember(k, *staleLink, l.timing.Now().Add(l.timing.RetryAfter))
			return *staleLink, nil
		}
		return Link{}, fmt.Errorf("resolve headscale user: %w: %w", ErrUnavailable, err)
	}
	link := d.match(l.cfg.Match, id, pid)
	l.remember(k, link, time.Time{})
	// A link that cannot be shared still answers here; the next instance asks Headscale.
	keep := l.freshUntil(link).Add(l.timing.KeepStale).Sub(l.timing.Now())
	_ = l.cache.Set(ctx, l.cacheTag+pid, link, keep)
	return link, nil
}

// ResolveUser returns the link of the Headscale user whose ID is userID, for a person whose
// identity the tailnet proved (the control server names the device's user: nothing needs
// matching). It answers and caches like Resolve, under a key no OIDC identity can have, so
// that a device's link and a sign-in's never share an entry. A user Headscale no longer lists
// yields an unlinked Link, cached for NegativeTTL.
func (l *Linker) ResolveUser(ctx context.Context, userID string) (Link, error) {
	if userID == "" {
		return Link{}, errors.New("resolve headscale user: no user id")
	}
	return l.Resolve(ctx, Identity{Issuer: userIDIssuer, Subject: userID})
}

// userIDIssuer is the issuer of the identities ResolveUser resolves. An OIDC issuer is an
// https URL, so no sign-in's identity can have it.
const userIDIssuer = "headscale:user-id"

// freshUntil is when link stops being trusted.
func (l *Linker) freshUntil(link Link) time.Time {
	if link.Linked() {
		return link.ResolvedAt.Add(l.cfg.TTL)
	}
	return link.ResolvedAt.Add(l.cfg.NegativeTTL)
}

// remember keeps link for k in process; a non-zero quietUntil holds off Headscale until then.
func (l *Linker) remember(k identityKey, link Link, quietUntil time.Time) {
	l.local.put(k, &entry{link: link, freshUntil: l.freshUntil(link), quietUntil: quietUntil}, l.timing.Now())
}
