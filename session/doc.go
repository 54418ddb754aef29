// Package session owns what proves a browser is signed in: the sealed session cookie, the
// short-lived login cookie of each sign-in attempt, and the server-side session stores that make
// a sign-out final.
//
// # Cookies
//
// A session cookie carries the whole [Session], encrypted and authenticated with keys derived
// from the configured secrets, so the proxy can prove an identity without a network round trip.
// The first secret seals new cookies and every secret opens them, which lets secrets be rotated
// without signing anybody out. Opened cookies are remembered in a bounded in-process cache, so a
// repeat request costs a map lookup instead of a MAC, a decryption and a decode.
//
// # Stores
//
// A cookie alone cannot be taken back, so each session also has a server-side record that
// sign-out deletes. [MemoryStore] keeps the records in process and is right for exactly one
// instance. [RedisStore] keeps them in Redis for every instance that shares it, and answers most
// checks from a local view of which sessions are live or revoked: a session is looked up in Redis
// once per instance, and sign-out is broadcast on a Redis channel so that every instance stops
// the session within a second. In steady state an authenticated request costs no Redis command.
//
// When the subscription to that channel drops, revocations may have been missed, so every
// locally known session is looked up again before it is trusted after the next subscription.
// While there is no subscription, a live answer is trusted for one second only. Such lookups
// happen as requests come, one per session and instance; those of different sessions that
// are due at once go to Redis together, in a few pipelines per round trip, so that a whole
// instance re-checking costs Redis a fraction of a command's round trip and CPU per session.
//
// When Redis cannot be reached, [RedisStore.Check] answers an error wrapping [ErrUnavailable]
// at once for a second after each failure instead of making every request wait for a timeout;
// the caller decides whether a session whose cookie verifies is still served. A sign-out made
// while Redis is down takes effect on this instance at once and on the others once Redis
// answers again.
//
// When Redis comes back empty (a restart without persistence, a flush), the records are gone:
// every session is then answered with [ErrRevoked] as it is looked up again, and everybody signs
// in again. This is deliberate: a missing record is indistinguishable from a sign-out, and
// failing closed is the only answer that never resurrects a revoked session.
//
// The stores tell the time and pace their background work with a [Timing]; the intervals named
// here are those of [DefaultTiming].
package session

import "errors"

// Errors callers branch on. They are returned wrapped; compare with errors.Is.
var (
	// ErrNoSession means the request carries no cookie of the asked kind.
	ErrNoSession = errors.New("no session cookie")
	// ErrInvalid means a cookie is present but does not open: tampered, truncated, sealed
	// with an unknown secret, of the wrong kind, oversized or garbage, or set under the
	// session cookie's name without the __Host- prefix that this configuration adds.
	ErrInvalid = errors.New("invalid session cookie")
	// ErrExpired means a cookie opened but its session or sign-in attempt has expired.
	ErrExpired = errors.New("session expired")
	// ErrAmbiguous means the request carries live session cookies of two different sessions:
	// one was planted (by a sibling subdomain, say), so none is used.
	ErrAmbiguous = errors.New("session cookies of different sessions")
	// ErrRevoked means the session was signed out or its server-side record is gone.
	ErrRevoked = errors.New("session revoked")
	// ErrUnavailable means the session store cannot answer right now.
	ErrUnavailable = errors.New("session store unavailable")
)
