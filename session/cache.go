package session

import (
	"hash/maphash"
	"strings"
	"sync"
)

// openCache maps the exact value of a verified session cookie to its decoded Session, so that a
// repeat request skips the MAC, the decryption and the decode. Only values that opened are ever
// added, so a forged value can neither enter nor evict. Entries are keyed by a seeded hash of
// the value and hold the value itself, which a hit must equal: the hash is computed once and
// the map never hashes the long value again. The cache is sharded to keep readers on different
// cores off each other's lock, and bounded: a full shard drops an arbitrary entry.
type openCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 16

type cacheShard struct {
	mu sync.RWMutex
	m  map[uint64]cached
}

type cached struct {
	value   string
	session *Session
}

// newOpenCache returns a cache of about size entries.
func newOpenCache(size int) *openCache {
	c := &openCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]cached)
	}
	return c
}

func (c *openCache) get(value string) *Session {
	h := maphash.String(c.seed, value)
	sh := &c.shards[h%cacheShards]
	sh.mu.RLock()
	e, ok := sh.m[h]
	sh.mu.RUnlock()
	if !ok || e.value != value {
		return nil
	}
	return e.session
}

func (c *openCache) add(value string, s *Session) {
	// The value may be a slice of a larger header line; keep only its own bytes.
	value = strings.Clone(value)
	h := maphash.String(c.seed, value)
	sh := &c.shards[h%cacheShards]
	sh.mu.Lock()
	if _, ok := sh.m[h]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[h] = cached{value: value, session: s}
	sh.mu.Unlock()
}

func (c *openCache) remove(value string) {
	h := maphash.String(c.seed, value)
	sh := &c.shards[h%cacheShards]
	sh.mu.Lock()
	if e, ok := sh.m[h]; ok && e.value == value {
		delete(sh.m, h)
	}
	sh.mu.Unlock()
}
