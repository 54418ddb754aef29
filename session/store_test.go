package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// store is what both stores offer; the gateway declares its own copy of it.
type store interface {
	Create(ctx context.Context, s *Session) error
	Check(ctx context.Context, s *Session) error
	Revoke(ctx context.Context, s *Session) error
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	RevokeProviderSessions(ctx context.Context, issuer, subject, providerSession string) (int, error)
	Ping(ctx context.Context) error
	Run(ctx context.Context) error
}

var (
	_ store = (*MemoryStore)(nil)
	_ store = (*RedisStore)(nil)
)

// newSession returns a session issued now that lasts lifetime.
func newSession(lifetime time.Duration) *Session { return newSessionAt(time.Now(), lifetime) }

// newSessionAt returns a session issued at now that lasts lifetime.
func newSessionAt(now time.Time, lifetime time.Duration) *Session {
	return &Session{ID: NewID(), Subject: "sub", IssuedAt: now, ExpiresAt: now.Add(lifetime)}
}

func TestStores(t *testing.T) {
	// Each store keeps time on a clock of the test's own.
	stores := map[string]func(t *testing.T) (store, *fakeClock){
		"memory": func(t *testing.T) (store, *fakeClock) {
			clock := newFakeClock(t)
			return NewMemoryStore(clock.timing()), clock
		},
		"redis": func(t *testing.T) (store, *fakeClock) {
			c, prefix := testRedis(t)
			clock := newFakeClock(t)
			return subscribedStore(t, c, prefix, clock.timing()), clock
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("lifecycle", func(t *testing.T) {
				t.Parallel()
				st, clock := newStore(t)
				ctx := context.Background()
				s := newSessionAt(clock.Now(), time.Hour)
				if err := st.Check(ctx, s); !errors.Is(err, ErrRevoked) {
					t.Errorf("before Create: got %v, want %v", err, ErrRevoked)
				}
				s = newSessionAt(clock.Now(), time.Hour)
				if err := st.Create(ctx, s); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if err := st.Check(ctx, s); err != nil {
						t.Errorf("after Create: got %v, want nil", err)
					}
				}
				other := newSessionAt(clock.Now(), time.Hour)
				if err := st.Create(ctx, other); err != nil {
					t.Fatal(err)
				}
				if err := st.Revoke(ctx, s); err != nil {
					t.Fatal(err)
				}
				if err := st.Check(ctx, s); !errors.Is(err, ErrRevoked) {
					t.Errorf("after Revoke: got %v, want %v", err, ErrRevoked)
				}
				if err := st.Check(ctx, other); err != nil {
					t.Errorf("another session after Revoke: got %v, want nil", err)
				}
				if err := st.Ping(ctx); err != nil {
					t.Errorf("Ping: got %v, want nil", err)
				}
			})
			t.Run("expiry", func(t *testing.T) {
				t.Parallel()
				st, clock := newStore(t)
				ctx := context.Background()
				s := newSessionAt(clock.Now(), 100*time.Millisecond)
				if err := st.Create(ctx, s); err != nil {
					t.Fatal(err)
				}
				if err := st.Check(ctx, s); err != nil {
					t.Errorf("before expiry: got %v, want nil", err)
				}
				clock.Advance(150 * time.Millisecond)
				if err := st.Check(ctx, s); !errors.Is(err, ErrExpired) {
					t.Errorf("after expiry: got %v, want %v", err, ErrExpired)
				}
			})
			t.Run("provider logout", func(t *testing.T) {
				t.Parallel()
				st, clock := newStore(t)
				ctx := context.Background()
				person := func(iss, sub, sid string) *Session {
					s := newSessionAt(clock.Now(), time.Hour)
					s.Issuer, s.Subject, s.ProviderSession = iss, sub, sid
					if err := st.Create(ctx, s); err != nil {
						t.Fatal(err)
					}
					return s
				}
				const idp, other = "https://idp.example.com", "https://other.example.com"
				laptop, phone, tablet := person(idp, "alice", "sid-1"), person(idp, "alice", "sid-2"), person(idp, "alice", "")
				bob, namesake := person(idp, "bob", "sid-3"), person(other, "alice", "sid-1")
				wantLive := func(what string, live map[*Session]bool) {
					t.Helper()
					for s, want := range live {
						err := st.Check(ctx, s)
						if want && err != nil || !want && !errors.Is(err, ErrRevoked) {
							t.Errorf("%s: session of %s/%s (%q): got %v, want live %v", what, s.Issuer, s.Subject, s.ProviderSession, err, want)
						}
					}
				}
				logout := func(iss, sub, sid string, want int) {
					t.Helper()
					n, err := st.RevokeProviderSessions(ctx, iss, sub, sid)
					if err != nil || n != want {
						t.Errorf("RevokeProviderSessions(%q, %q, %q): got %d, %v, want %d, nil", iss, sub, sid, n, err, want)
					}
				}

				// A provider session ends the sessions begun in it, of that issuer, and those of
				// the person that began without one (they cannot be told apart).
				logout(idp, "alice", "sid-1", 2)
				wantLive("after sid-1", map[*Session]bool{laptop: false, tablet: false, phone: true, bob: true, namesake: true})
				logout(idp, "alice", "sid-1", 0)
				// A provider session alone ends just its sessions.
				logout(idp, "", "sid-3", 1)
				wantLive("after sid-3", map[*Session]bool{bob: false, phone: true, namesake: true})
				// A person's logout ends all their sessions at that issuer, and nobody else's.
				logout(idp, "alice", "", 1)
				wantLive("after alice", map[*Session]bool{phone: false, namesake: true})
				logout(idp, "nobody", "", 0)
				if _, err := st.RevokeProviderSessions(ctx, idp, "", ""); err == nil {
					t.Error("neither subject nor provider session: got nil, want an error")
				}
				// A session begun after a logout is not touched by it.
				later := person(idp, "alice", "sid-1")
				wantLive("a later session", map[*Session]bool{later: true})
			})
			t.Run("claim", func(t *testing.T) {
				t.Parallel()
				st, clock := newStore(t)
				ctx := context.Background()
				var wins atomic.Int32
				var wg sync.WaitGroup
				for range 20 {
					wg.Go(func() {
						first, err := st.Claim(ctx, "state:abc", time.Minute)
						if err != nil {
							t.Error(err)
						}
						if first {
							wins.Add(1)
						}
					})
				}
				wg.Wait()
				if got := wins.Load(); got != 1 {
					t.Errorf("got %d first claims among 20, want 1", got)
				}
				if first, err := st.Claim(ctx, "state:def", time.Minute); err != nil || !first {
					t.Errorf("another key: got %v, %v, want true, nil", first, err)
				}
				if first, err := st.Claim(ctx, "short", 50*time.Millisecond); err != nil || !first {
					t.Fatalf("short claim: got %v, %v, want true, nil", first, err)
				}
				// The memory store's claim expires on its clock, Redis's in Redis's own time: a
				// claim that is still held changes nothing, so it is asked until it is free.
				clock.Advance(80 * time.Millisecond)
				var first bool
				var err error
				waitFor(t, 10*time.Second, "the short claim to expire", func() bool {
					first, err = st.Claim(ctx, "short", time.Minute)
					return err != nil || first
				})
				if err != nil || !first {
					t.Errorf("after the ttl: got %v, %v, want true, nil", first, err)
				}
				if _, err := st.Claim(ctx, "zero", 0); err == nil {
					t.Error("zero ttl: got nil, want an error")
				}
			})
		})
	}
}

func TestMemoryPrune(t *testing.T) {
	m := NewMemoryStore(DefaultTiming())
	ctx := context.Background()
	short, long := newSession(time.Minute), newSession(time.Hour)
	for _, s := range []*Session{short, long} {
		if err := m.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Claim(ctx, "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	m.prune(time.Now().Add(2 * time.Minute))
	if len(m.sessions) != 1 || len(m.claims) != 0 {
		t.Errorf("got %d sessions and %d claims, want 1 and 0", len(m.sessions), len(m.claims))
	}
	if err := m.Check(ctx, long); err != nil {
		t.Errorf("the unexpired session: got %v, want nil", err)
	}
}

func BenchmarkMemoryCheck(b *testing.B) {
	m := NewMemoryStore(DefaultTiming())
	s := newSession(time.Hour)
	ctx := context.Background()
	if err := m.Create(ctx, s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Check(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}
