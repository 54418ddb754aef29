package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// MemoryStore keeps session records in process. It is right for exactly one instance: a
// sign-out takes effect at once, but other processes never learn of it. It is safe for
// concurrent use; the zero value is not usable, call NewMemoryStore.
type MemoryStore struct {
	timing   Timing
	mu       sync.RWMutex
	sessions map[string]memoryRecord // by session ID
	claims   map[string]time.Time    // key -> expiry
	shared   map[string]sharedValue  // see Shared
}

// memoryRecord is what MemoryStore keeps of a session.
type memoryRecord struct {
	expires                          time.Time
	issuer, subject, providerSession string
}

// NewMemoryStore returns an empty store that keeps time as timing says.
func NewMemoryStore(timing Timing) *MemoryStore {
	return &MemoryStore{timing: timing.withDefaults(), sessions: make(map[string]memoryRecord), claims: make(map[string]time.Time)}
}

// Create records s until s.ExpiresAt.
func (m *MemoryStore) Create(_ context.Context, s *Session) error {
	m.mu.Lock()
	m.sessions[s.ID] = memoryRecord{expires: s.ExpiresAt, issuer: s.Issuer, subject: s.Subject, providerSession: s.ProviderSession}
	m.mu.Unlock()
	return nil
}

// Check answers nil while s is recorded, ErrExpired once its record has expired and ErrRevoked
// when there is no record.
func (m *MemoryStore) Check(_ context.Context, s *Session) error {
	m.mu.RLock()
	rec, ok := m.sessions[s.ID]
	m.mu.RUnlock()
	switch {
	case !ok:
		return ErrRevoked
	case !m.timing.Now().Before(rec.expires):
		return ErrExpired
	}
	return nil
}

// Revoke deletes the record of s.
func (m *MemoryStore) Revoke(_ context.Context, s *Session) error {
	m.mu.Lock()
	delete(m.sessions, s.ID)
	m.mu.Unlock()
	return nil
}

// RevokeProviderSessions ends the sessions an identity provider's back-channel logout names (see
// RedisStore.RevokeProviderSessions) and reports how many were live.
func (m *MemoryStore) RevokeProviderSessions(_ context.Context, issuer, subject, providerSession string) (int, error) {
	if subject == "" && providerSession == "" {
		return 0, errNoProviderSelector
	}
	now := m.timing.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, rec := range m.sessions {
		if rec.issuer != issuer || !now.Before(rec.expires) {
			continue
		}
		bySID := providerSession != "" && rec.providerSession == providerSession
		bySubject := subject != "" && rec.subject == subject && (providerSession == "" || rec.providerSession == "")
		if !bySID && !bySubject {
			continue
		}
		delete(m.sessions, id)
		n++
	}
	return n, nil
}

// Claim reports true for the first claim of key within ttl and false for every later one.
func (m *MemoryStore) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errors.New("claim: ttl must be positive")
	}
	now := m.timing.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if exp, ok := m.claims[key]; ok && now.Before(exp) {
		return false, nil
	}
	m.claims[key] = now.Add(ttl)
	return true, nil
}

// Ping always answers nil.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Run drops expired records every Timing.PruneInterval (a minute by default) until ctx ends,
// then returns nil.
func (m *MemoryStore) Run(ctx context.Context) error {
	prune, stop := m.timing.Tick(m.timing.PruneInterval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-prune:
			m.prune(now)
		}
	}
}

func (m *MemoryStore) prune(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, rec := range m.sessions {
		if !now.Before(rec.expires) {
			delete(m.sessions, id)
		}
	}
	for key, exp := range m.claims {
		if !now.Before(exp) {
			delete(m.claims, key)
		}
	}
}
