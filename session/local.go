package session

import (
	"crypto/sha256"
	"encoding/base64"
	"math"
	"sync"
	"time"
)

// localView is one instance's knowledge of which sessions are live and which are revoked. A
// revoked entry is final: session IDs are never reused, so nothing turns it live again.
//
// It holds an entry per session a request has shown it, a million and more on a busy gateway,
// so an entry is kept small and free of pointers: the map is then never scanned by the garbage
// collector, and a session costs no allocation of its own beyond its slot.
type localView struct {
	ids    *base64.Encoding
	shards [localShards]localShard
}

const localShards = 32

type localShard struct {
	mu sync.RWMutex
	m  map[viewKey]entry
}

// viewKey is a session ID as the view keeps it: the 16 random bytes that NewID encodes, or,
// for an ID of any other form, the first 16 bytes of its SHA-256, which no two IDs share but
// by a chance of 2^-128.
type viewKey [16]byte

// entry is what is known of one session.
type entry struct {
	// gen is the subscription generation in which the session was last confirmed live, or
	// revokedGen.
	gen uint64
	// checked is when the session was last confirmed live, in Unix nanoseconds.
	checked int64
	// expires is when the entry may be forgotten, in Unix nanoseconds.
	expires int64
}

// revokedGen marks a revoked session: no subscription generation reaches it, so a revoked
// entry is never taken for a confirmed one.
const revokedGen = math.MaxUint64

func (e entry) revoked() bool { return e.gen == revokedGen }

func newLocalView() *localView {
	v := &localView{ids: base64.RawURLEncoding.Strict()}
	for i := range v.shards {
		v.shards[i].m = make(map[viewKey]entry)
	}
	return v
}

// key returns the key of id. Decoding is strict, so that no two IDs of NewID's form share one.
func (v *localView) key(id string) viewKey {
	var k viewKey
	if len(id) == base64.RawURLEncoding.EncodedLen(len(k)) {
		if n, err := v.ids.Decode(k[:], []byte(id)); err == nil && n == len(k) {
			return k
		}
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

// shard picks by a byte of the key, random in either form.
func (v *localView) shard(k viewKey) *localShard {
	return &v.shards[k[0]%localShards]
}

func (v *localView) get(id string) (entry, bool) {
	k := v.key(id)
	sh := v.shard(k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	return e, ok
}

// confirm records that the session was live in generation gen at now. It never overrides a
// revocation that arrived while the confirming lookup was in flight.
func (v *localView) confirm(id string, gen uint64, now, expires time.Time) {
	k := v.key(id)
	sh := v.shard(k)
	sh.mu.Lock()
	if e, ok := sh.m[k]; !ok || !e.revoked() {
		sh.m[k] = entry{gen: gen, checked: now.UnixNano(), expires: expires.UnixNano()}
	}
	sh.mu.Unlock()
}

// revoke marks the session revoked, to be remembered until at least until.
func (v *localView) revoke(id string, until time.Time) {
	k := v.key(id)
	sh := v.shard(k)
	sh.mu.Lock()
	e := sh.m[k]
	sh.m[k] = entry{gen: revokedGen, expires: max(e.expires, until.UnixNano())}
	sh.mu.Unlock()
}

// prune forgets every entry that expired before now.
func (v *localView) prune(now time.Time) {
	n := now.UnixNano()
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.expires < n {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}
