package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"
)

// Shared returns the value stored under name, after storing the one create makes when there is
// none, so that every instance sharing the store gets the same value (a signing key generated
// once). The value is kept for ttl from its creation.
func (r *RedisStore) Shared(ctx context.Context, name string, ttl time.Duration, create func() ([]byte, error)) ([]byte, error) {
	if ttl <= 0 {
		return nil, errors.New("shared value: ttl must be positive")
	}
	key := r.prefix + "shared:" + name
	for range 2 {
		v, err := r.client.Get(ctx, key).Bytes()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, redis.Nil) {
			return nil, r.failed(ctx, "read shared value", err)
		}
		made, err := create()
		if err != nil {
			return nil, fmt.Errorf("make shared value: %w", err)
		}
		stored, err := r.client.SetNX(ctx, key, made, ttl).Result()
		if err != nil {
			return nil, r.failed(ctx, "store shared value", err)
		}
		if stored {
			return made, nil
		}
		// Another instance stored its value first: that one is everyone's.
	}
	return nil, fmt.Errorf("shared value %s: stored and gone again", name)
}

// Shared returns the value kept under name, after keeping the one create makes when there is
// none or it is older than ttl.
func (m *MemoryStore) Shared(_ context.Context, name string, ttl time.Duration, create func() ([]byte, error)) ([]byte, error) {
	if ttl <= 0 {
		return nil, errors.New("shared value: ttl must be positive")
	}
	now := m.timing.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.shared[name]; ok && now.Before(v.expires) {
		return v.value, nil
	}
	made, err := create()
	if err != nil {
		return nil, fmt.Errorf("make shared value: %w", err)
	}
	if m.shared == nil {
		m.shared = make(map[string]sharedValue)
	}
	m.shared[name] = sharedValue{value: made, expires: now.Add(ttl)}
	return made, nil
}

// SealValue encrypts and authenticates v with the session secrets, bound to purpose, for a value
// kept on the server side (a signing key in a shared store): without the secrets it reads as
// nothing and cannot be forged. Unlike a cookie it does not expire.
func (c *Cookies) SealValue(purpose string, v []byte) (string, error) {
	sealed, err := securecookie.EncodeMulti(macValue+purpose, v, c.valueCodecs[0])
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", purpose, err)
	}
	return sealed, nil
}

// OpenValue returns what SealValue sealed for purpose with any of the session secrets.
func (c *Cookies) OpenValue(purpose, sealed string) ([]byte, error) {
	var v []byte
	if err := securecookie.DecodeMulti(macValue+purpose, sealed, &v, c.valueCodecs...); err != nil {
		return nil, fmt.Errorf("open %s: %w", purpose, err)
	}
	return v, nil
}

// macValue starts the MAC name of a sealed value, so that no cookie opens as one.
const macValue = "value:"

// newValueCodecs are the codecs of SealValue: the cookie keys, no expiry, bytes as they are.
func newValueCodecs(pairs [][]byte) []securecookie.Codec {
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		sc := c.(*securecookie.SecureCookie)
		sc.MaxAge(0)
		sc.MaxLength(0)
		sc.SetSerializer(securecookie.NopEncoder{})
	}
	return codecs
}

type sharedValue struct {
	value   []byte
	expires time.Time
}
