package session

import (
	"hash/maphash"
	"sync"
	"time"
)

// localView is one instance's knowledge of which sessions are live and which are revoked. A
// revoked entry is final: session IDs are never reused, so nothing turns it live again.
type localView struct {
	seed   maphash.Seed
	shards [localShards]localShard
}

const localShards = 32

type localShard struct {
	mu sync.RWMutex
	m  map[string]entry
}

// entry is what is known of one session.
type entry struct {
	revoked bool
	// gen is the subscription generation in which the session was last confirmed live.
	gen uint64
	// checked is when the session was last confirmed live, in Unix nanoseconds.
	checked int64
	// expires is when the entry may be forgotten, in Unix nanoseconds.
	expires int64
}

func newLocalView() *localView {
	v := &localView{seed: maphash.MakeSeed()}
	for i := range v.shards {
		v.shards[i].m = make(map[string]entry)
	}
	return v
}

func (v *localView) shard(id string) *localShard {
	return &v.shards[maphash.String(v.seed, id)%localShards]
}

func (v *localView) get(id string) (entry, bool) {
	sh := v.shard(id)
	sh.mu.RLock()
	e, ok := sh.m[id]
	sh.mu.RUnlock()
	return e, ok
}

// confirm records that the session was live in generation gen at now. It never overrides a
// revocation that arrived while the confirming lookup was in flight.
func (v *localView) confirm(id string, gen uint64, now, expires time.Time) {
	sh := v.shard(id)
	sh.mu.Lock()
	if e, ok := sh.m[id]; !ok || !e.revoked {
		sh.m[id] = entry{gen: gen, checked: now.UnixNano(), expires: expires.UnixNano()}
	}
	sh.mu.Unlock()
}

// revoke marks the session revoked, to be remembered until at least until.
func (v *localView) revoke(id string, until time.Time) {
	sh := v.shard(id)
	sh.mu.Lock()
	e := sh.m[id]
	sh.m[id] = entry{revoked: true, expires: max(e.expires, until.UnixNano())}
	sh.mu.Unlock()
}

// prune forgets every entry that expired before now.
func (v *localView) prune(now time.Time) {
	n := now.UnixNano()
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if e.expires < n {
				delete(sh.m, id)
			}
		}
		sh.mu.Unlock()
	}
}
