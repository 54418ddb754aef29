package session

import (
	"crypto/sha256"
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
	// digits maps a character of NewID's alphabet to its 6 bits and any other byte to 0xff.
	digits [256]byte
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
	v := &localView{}
	for i := range v.digits {
		v.digits[i] = 0xff
	}
	for i, c := range []byte(idAlphabet) {
		v.digits[c] = byte(i)
	}
	for i := range v.shards {
		v.shards[i].m = make(map[viewKey]entry)
	}
	return v
}

// idAlphabet is that of base64.RawURLEncoding, in which NewID writes its 16 bytes.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// key returns the key of id.
func (v *localView) key(id string) viewKey {
	var k viewKey
	if v.decode(id, &k) {
		return k
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

// decode decodes an ID of NewID's form into k and reports whether it was one: 22 characters
// of the alphabet, 132 bits of which the last 4 are zero. It is strict, so that no two IDs of
// that form share a key, and it is written out because every check pays for it: it takes a
// fraction of the time of base64's Decode.
func (v *localView) decode(id string, k *viewKey) bool {
	if len(id) != 22 {
		return false
	}
	var bad byte
	for g := range 5 {
		a, b, c, d := v.digits[id[4*g]], v.digits[id[4*g+1]], v.digits[id[4*g+2]], v.digits[id[4*g+3]]
		bad |= a | b | c | d
		n := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		k[3*g], k[3*g+1], k[3*g+2] = byte(n>>16), byte(n>>8), byte(n)
	}
	a, b := v.digits[id[20]], v.digits[id[21]]
	bad |= a | b
	k[15] = a<<2 | b>>4
	// A valid digit is below 64, so bad has its high bits clear unless a byte was not one.
	return bad&0xc0 == 0 && b&0x0f == 0
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
