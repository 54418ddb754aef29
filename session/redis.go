package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// RedisStore keeps session records in Redis, shared by every instance that uses the same key
// prefix, and answers most checks from a local view kept current by revocation messages (see
// the package documentation). It uses single-key commands only, so it works with standalone,
// Sentinel and Cluster clients; reads must go to the primary, since a record missing on a
// lagging replica would read as a sign-out. It is safe for concurrent use.
//
// Run must be running for sign-outs elsewhere to arrive as messages and for the local view to
// stay bounded. Without it, a live answer is trusted for Timing.UnsubscribedTrust (a second by
// default) at a time, which costs a lookup per session and such a period.
type RedisStore struct {
	client  redis.UniversalClient
	prefix  string
	channel string
	local   *localView
	lookups *lookups
	timing  Timing

	// gen counts subscriptions to the revocation channel. A live answer confirmed in an older
	// generation may predate a missed revocation and is looked up again.
	gen        atomic.Uint64
	subscribed atomic.Bool
	// downUntil is when Redis may be tried again after a failure, in Unix nanoseconds.
	downUntil atomic.Int64
	flight    singleflight.Group
	// kick asks Run to apply pending revocations now.
	kick chan struct{}

	mu      sync.Mutex
	pending map[string]time.Time // id -> session expiry: revocations Redis has not heard of
}

// NewRedisStore returns a store writing keys that start with prefix, such as "headgate:", that
// keeps time and waits as timing says.
func NewRedisStore(client redis.UniversalClient, prefix string, timing Timing) *RedisStore {
	return &RedisStore{
		client:  client,
		prefix:  prefix,
		channel: prefix + "revoked",
		local:   newLocalView(),
		lookups: newLookups(client, lookupTrips, lookupBatch),
		timing:  timing.withDefaults(),
		kick:    make(chan struct{}, 1),
		pending: make(map[string]time.Time),
	}
}

func (r *RedisStore) recordKey(id string) string { return r.prefix + "session:" + id }

// Create records s in Redis until s.ExpiresAt.
func (r *RedisStore) Create(ctx context.Context, s *Session) error {
	now := r.timing.Now()
	ttl := s.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return errors.New("create session: already expired")
	}
	if r.down(now) {
		return fmt.Errorf("create session: %w", ErrUnavailable)
	}
	gen := r.gen.Load()
	// The record and its entries in the provider indexes are written in one round trip; a
	// session that a back-channel logout could not find is not created.
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.recordKey(s.ID), "1", ttl)
		r.index(ctx, p, s, ttl)
		return nil
	})
	if err != nil {
		return r.failed(ctx, "create session", err)
	}
	r.up()
	r.local.confirm(s.ID, gen, now, s.ExpiresAt)
	return nil
}

// Check answers nil for a live session, ErrRevoked for a signed-out one or one whose record is
// gone, ErrExpired for an expired one and an error wrapping ErrUnavailable when Redis cannot
// answer. A session this instance has confirmed live costs no Redis command.
func (r *RedisStore) Check(ctx context.Context, s *Session) error {
	now := r.timing.Now()
	if !now.Before(s.ExpiresAt) {
		return ErrExpired
	}
	if e, ok := r.local.get(s.ID); ok {
		if e.revoked() {
			return ErrRevoked
		}
		// Confirmed since the last subscription began: a revocation would have arrived. Without
		// a subscription, a revocation may be missed, so the answer is trusted only briefly.
		if e.gen == r.gen.Load() && (r.subscribed.Load() || now.UnixNano()-e.checked < int64(r.timing.UnsubscribedTrust)) {
			return nil
		}
	}
	if r.down(now) {
		return fmt.Errorf("check session: %w", ErrUnavailable)
	}
	// Parallel requests of one page share a lookup; lookups of different sessions at once share
	// round trips.
	_, err, _ := r.flight.Do(s.ID, func() (any, error) { return nil, r.lookup(ctx, s) })
	return err
}

// lookup asks Redis whether the record of s exists and remembers the answer.
func (r *RedisStore) lookup(ctx context.Context, s *Session) error {
	gen := r.gen.Load()
	exists, err := r.lookups.exists(ctx, r.recordKey(s.ID))
	if err != nil {
		return r.failed(ctx, "check session", err)
	}
	r.up()
	if !exists {
		r.local.revoke(s.ID, s.ExpiresAt)
		return ErrRevoked
	}
	r.local.confirm(s.ID, gen, r.timing.Now(), s.ExpiresAt)
	return nil
}

// Revoke ends s on every instance: it deletes the record and announces the revocation. It takes
// effect on this instance at once. When Redis cannot be reached it answers an error wrapping
// ErrUnavailable and Run applies the revocation once Redis answers again; such a pending
// revocation lives in this process only: Run tries it once more when it stops, and reports it
// if it is lost.
func (r *RedisStore) Revoke(ctx context.Context, s *Session) error {
	now := r.timing.Now()
	r.local.revoke(s.ID, s.ExpiresAt)
	if !now.Before(s.ExpiresAt) {
		return nil // its record has expired already
	}
	if r.down(now) {
		r.addPending(s)
		return fmt.Errorf("revoke session: %w", ErrUnavailable)
	}
	if _, err := r.announce(ctx, s.ID); err != nil {
		r.addPending(s)
		return r.failed(ctx, "revoke session", err)
	}
	r.up()
	return nil
}

// announce ends the sessions ids on every instance: it deletes their records, then publishes
// their revocations, so that an instance that looks a session up after the message never finds
// it live. It reports how many records still existed.
func (r *RedisStore) announce(ctx context.Context, ids ...string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	dels := make([]*redis.IntCmd, len(ids))
	if _, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			dels[i] = p.Del(ctx, r.recordKey(id))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if _, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Publish(ctx, r.channel, id)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// Claim reports true for the first claim of key within ttl on any instance and false for every
// later one.
func (r *RedisStore) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errors.New("claim: ttl must be positive")
	}
	if r.down(r.timing.Now()) {
		return false, fmt.Errorf("claim: %w", ErrUnavailable)
	}
	first, err := r.client.SetNX(ctx, r.prefix+"claim:"+key, "1", ttl).Result()
	if err != nil {
		return false, r.failed(ctx, "claim", err)
	}
	r.up()
	return first, nil
}

// Ping asks Redis whether it answers; unlike the other methods it tries even right after a
// failure.
func (r *RedisStore) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.failed(ctx, "ping redis", err)
	}
	r.up()
	return nil
}

// down reports whether Redis should not be tried now. Once the pause after a failure is over,
// exactly one caller is let through to probe, and the others keep being answered at once until
// the probe succeeds: while Redis is down, at most one request per DownFor waits on it.
func (r *RedisStore) down(now time.Time) bool {
	until := r.downUntil.Load()
	if until == 0 {
		return false
	}
	if n := now.UnixNano(); n < until || !r.downUntil.CompareAndSwap(until, n+int64(r.timing.DownFor)) {
		return true
	}
	return false
}

func (r *RedisStore) up() {
	if r.downUntil.Load() != 0 {
		r.downUntil.Store(0)
	}
}

// failed wraps err from the operation op as unavailability. Unless the caller gave up, Redis
// is then not tried again for DownFor.
func (r *RedisStore) failed(ctx context.Context, op string, err error) error {
	if ctx.Err() == nil {
		r.downUntil.Store(r.timing.Now().Add(r.timing.DownFor).UnixNano())
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

func (r *RedisStore) addPending(s *Session) {
	r.mu.Lock()
	r.pending[s.ID] = s.ExpiresAt
	r.mu.Unlock()
}
