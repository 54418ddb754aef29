package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// An identity provider that supports OpenID Connect Back-Channel Logout tells its relying
// parties when a person's session there ends, naming the person (sub), the provider's session
// (sid), or both. The stores index every session by both, so that such a logout ends the
// sessions it names on every instance.

// errNoProviderSelector is RevokeProviderSessions' answer when neither subject nor session is given.
var errNoProviderSelector = errors.New("revoke provider sessions: neither subject nor provider session given")

// subjectIndexKey and providerSessionIndexKey name the Redis sets of the sessions of one person
// and of one provider session. Their names hash the identifiers: they are the provider's and
// may be long or contain anything.
func (r *RedisStore) subjectIndexKey(issuer, subject string) string {
	return r.prefix + "subject:" + indexHash(issuer, subject)
}

func (r *RedisStore) providerSessionIndexKey(issuer, providerSession string) string {
	return r.prefix + "sid:" + indexHash(issuer, providerSession)
}

func indexHash(issuer, id string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + id))
	return hex.EncodeToString(sum[:16])
}

// index adds s to the provider indexes in p. An index is a sorted set of session IDs scored by
// expiry: each addition drops the expired members, and the set lives as long as its longest
// session (EXPIRE NX gives a new set its first expiry, EXPIRE GT only ever extends it), so a
// person who signs in every day does not grow it without bound.
func (r *RedisStore) index(ctx context.Context, p redis.Pipeliner, s *Session, ttl time.Duration) {
	type entry struct{ key, member string }
	entries := []entry{{r.subjectIndexKey(s.Issuer, s.Subject), s.ID + noProviderSession}}
	if s.ProviderSession != "" {
		entries = []entry{
			{r.subjectIndexKey(s.Issuer, s.Subject), s.ID},
			{r.providerSessionIndexKey(s.Issuer, s.ProviderSession), s.ID},
		}
	}
	now := strconv.FormatInt(r.timing.Now().UnixMilli(), 10)
	// EXPIRE counts whole seconds: round up, never below the session's own lifetime.
	ttl = ttl.Truncate(time.Second) + time.Second
	for _, e := range entries {
		p.ZRemRangeByScore(ctx, e.key, "-inf", "("+now)
		p.ZAdd(ctx, e.key, redis.Z{Score: float64(s.ExpiresAt.UnixMilli()), Member: e.member})
		p.ExpireNX(ctx, e.key, ttl)
		p.ExpireGT(ctx, e.key, ttl)
	}
}

// noProviderSession marks a member of a subject index whose session began without a provider
// session (an ID token without sid): a logout naming a provider session cannot tell whether
// it was one of them.
const noProviderSession = " nosid"

// RevokeProviderSessions ends, on every instance, the sessions an identity provider's
// back-channel logout names: with subject alone, every session of that person at issuer; with
// providerSession, the sessions begun in it (the person's other sessions stay), and, when
// subject is given too, also the person's sessions that began without a provider session,
// which cannot be told apart (failing closed). It reports how many live sessions it ended.
// When Redis cannot be read it answers an error wrapping ErrUnavailable and ends nothing, since
// only Redis knows which sessions to end; once they are known, they end on this instance at
// once and, like a Revoke while Redis fails, on the others when Redis answers again.
func (r *RedisStore) RevokeProviderSessions(ctx context.Context, issuer, subject, providerSession string) (int, error) {
	if subject == "" && providerSession == "" {
		return 0, errNoProviderSelector
	}
	if r.down(r.timing.Now()) {
		return 0, fmt.Errorf("revoke provider sessions: %w", ErrUnavailable)
	}
	now := strconv.FormatInt(r.timing.Now().UnixMilli(), 10)
	var bySID, bySubject *redis.ZSliceCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		rng := &redis.ZRangeBy{Min: now, Max: "+inf"}
		if providerSession != "" {
			bySID = p.ZRangeByScoreWithScores(ctx, r.providerSessionIndexKey(issuer, providerSession), rng)
		}
		if subject != "" {
			bySubject = p.ZRangeByScoreWithScores(ctx, r.subjectIndexKey(issuer, subject), rng)
		}
		return nil
	})
	if err != nil {
		return 0, r.failed(ctx, "revoke provider sessions", err)
	}
	var ended []*Session
	add := func(z redis.Z, id string) {
		s := &Session{ID: id, ExpiresAt: time.UnixMilli(int64(z.Score))}
		r.local.revoke(s.ID, s.ExpiresAt)
		ended = append(ended, s)
	}
	if bySID != nil {
		for _, z := range bySID.Val() {
			if id, ok := z.Member.(string); ok {
				add(z, id)
			}
		}
	}
	if bySubject != nil {
		for _, z := range bySubject.Val() {
			m, ok := z.Member.(string)
			if !ok {
				continue
			}
			id, withoutSID := strings.CutSuffix(m, noProviderSession)
			if providerSession == "" || withoutSID {
				add(z, id)
			}
		}
	}
	ids := make([]string, len(ended))
	for i, s := range ended {
		ids[i] = s.ID
	}
	// A record already gone was signed out before and is not counted.
	n, err := r.announce(ctx, ids...)
	if err != nil {
		// Ended here already; Run shares them with the other instances once Redis answers.
		for _, s := range ended {
			r.addPending(s)
		}
		return len(ended), r.failed(ctx, "revoke provider sessions", err)
	}
	r.up()
	return n, nil
}
