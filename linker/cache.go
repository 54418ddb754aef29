package linker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cache is the link cache shared by every instance of the gateway, keyed by ProviderID. Set
// keeps a link for ttl; whether a kept link is still fresh is the Linker's call, made from
// Link.ResolvedAt, so that every instance expires it at the same moment. A ttl of zero or less
// stores nothing. Implementations are safe for concurrent use.
type Cache interface {
	Get(ctx context.Context, key string) (Link, bool, error)
	Set(ctx context.Context, key string, l Link, ttl time.Duration) error
}

// cachedLink is a Link as the RedisCache stores it: compact JSON, the time in Unix nanoseconds
// so that every instance reads back exactly the moment it was resolved.
type cachedLink struct {
	UserID      string   `json:"id,omitempty"`
	UserName    string   `json:"name,omitempty"`
	DisplayName string   `json:"display,omitempty"`
	Email       string   `json:"email,omitempty"`
	Method      string   `json:"method,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Shared      []string `json:"shared,omitempty"`
	ResolvedAt  int64    `json:"at"`
}

func encodeLink(l Link) ([]byte, error) {
	return json.Marshal(cachedLink{
		UserID: l.UserID, UserName: l.UserName, DisplayName: l.DisplayName, Email: l.Email,
		Method: l.Method, Reason: l.Reason, Shared: l.NameSharedWith, ResolvedAt: l.ResolvedAt.UnixNano(),
	})
}

func decodeLink(b []byte) (Link, error) {
	var c cachedLink
	if err := json.Unmarshal(b, &c); err != nil {
		return Link{}, err
	}
	if c.ResolvedAt <= 0 {
		return Link{}, errors.New("no resolution time")
	}
	return Link{
		UserID: c.UserID, UserName: c.UserName, DisplayName: c.DisplayName, Email: c.Email,
		Method: c.Method, Reason: c.Reason, NameSharedWith: c.Shared, ResolvedAt: time.Unix(0, c.ResolvedAt),
	}, nil
}

// RedisCache is a Cache in Redis, for gateways that run as several instances.
type RedisCache struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisCache returns a Cache that keeps each link under prefix + "link:" + key.
func NewRedisCache(client redis.UniversalClient, prefix string) *RedisCache {
	return &RedisCache{client: client, prefix: prefix + "link:"}
}

// Get returns the link stored under key. A missing key is (Link{}, false, nil); an unreadable
// value is an error, as is Redis not answering.
func (c *RedisCache) Get(ctx context.Context, key string) (Link, bool, error) {
	b, err := c.client.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, fmt.Errorf("get cached link: %w", err)
	}
	l, err := decodeLink(b)
	if err != nil {
		return Link{}, false, fmt.Errorf("decode cached link: %w", err)
	}
	return l, true, nil
}

// Set stores l under key for ttl, replacing what was there.
func (c *RedisCache) Set(ctx context.Context, key string, l Link, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	b, err := encodeLink(l)
	if err != nil {
		return fmt.Errorf("encode link: %w", err)
	}
	// go-redis sends PX for a ttl that is not whole seconds; below 1ms it would log and round up.
	if err := c.client.Set(ctx, c.prefix+key, b, max(ttl, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("cache link: %w", err)
	}
	return nil
}

// MemoryCache is a Cache in process memory, for a gateway that runs as a single instance. Expired
// links are dropped as the cache grows.
type MemoryCache struct {
	now func() time.Time

	mu      sync.Mutex
	links   map[string]memoryLink
	pruneAt int // prune expired links when the map reaches this size
}

// minPruneAt is the size below which a MemoryCache never prunes.
const minPruneAt = 1024

type memoryLink struct {
	link    Link
	expires time.Time
}

// NewMemoryCache returns an empty MemoryCache that expires links by t's clock (the zero Timing:
// the system's).
func NewMemoryCache(t Timing) *MemoryCache {
	return &MemoryCache{now: t.withDefaults().Now, links: make(map[string]memoryLink), pruneAt: minPruneAt}
}

// Get returns the link stored under key, if it has not expired. It never fails.
func (c *MemoryCache) Get(_ context.Context, key string) (Link, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.links[key]
	if !ok || !c.now().Before(m.expires) {
		return Link{}, false, nil
	}
	return m.link, true, nil
}

// Set stores l under key for ttl, replacing what was there. It never fails.
func (c *MemoryCache) Set(_ context.Context, key string, l Link, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.links[key] = memoryLink{link: l, expires: now.Add(ttl)}
	if len(c.links) >= c.pruneAt {
		for k, m := range c.links {
			if !now.Before(m.expires) {
				delete(c.links, k)
			}
		}
		// Prune again only after the live links have doubled, so pruning stays amortized O(1).
		c.pruneAt = max(2*len(c.links), minPruneAt)
	}
	return nil
}
