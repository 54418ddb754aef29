package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisRevokeReachesOtherInstances: a sign-out reaches another instance as a message. The
// instances' clock stands still, so no window that passed can be what ended the session there.
func TestRedisRevokeReachesOtherInstances(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	clock := newFakeClock(t)
	a, b := subscribedStore(t, c, prefix, clock.timing()), subscribedStore(t, c, prefix, clock.timing())
	ctx := context.Background()
	s := newSessionAt(clock.Now(), time.Hour)
	shareSession(t, a, b, s)
	if err := a.Revoke(ctx, s); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "sign-out on A reaching B", func() bool {
		return errors.Is(b.Check(ctx, s), ErrRevoked)
	})
	t.Logf("sign-out reached the other instance in %v", took)
}

func TestRedisProviderLogoutReachesOtherInstances(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	clock := newFakeClock(t)
	a, b := subscribedStore(t, c, prefix, clock.timing()), subscribedStore(t, c, prefix, clock.timing())
	ctx := context.Background()
	s := newSessionAt(clock.Now(), time.Hour)
	s.Issuer, s.Subject, s.ProviderSession = "https://idp.example.com", "alice", "sid-1"
	shareSession(t, a, b, s)
	// The indexes live as long as the session, no longer.
	for _, key := range []string{a.subjectIndexKey(s.Issuer, s.Subject), a.providerSessionIndexKey(s.Issuer, s.ProviderSession)} {
		ttl, err := c.TTL(ctx, key).Result()
		if err != nil || ttl < 59*time.Minute || ttl > time.Hour+time.Second {
			t.Errorf("index %s: TTL %v, %v, want about the session's hour", key, ttl, err)
		}
	}
	// The provider's logout may reach any instance: here the one that did not create the session.
	if n, err := b.RevokeProviderSessions(ctx, s.Issuer, s.Subject, ""); err != nil || n != 1 {
		t.Fatalf("RevokeProviderSessions: got %d, %v, want 1, nil", n, err)
	}
	took := waitFor(t, 10*time.Second, "the provider's logout reaching A", func() bool {
		return errors.Is(a.Check(ctx, s), ErrRevoked)
	})
	t.Logf("the provider's logout reached the other instance in %v", took)
	// The same logout again finds nothing live to end.
	if n, err := a.RevokeProviderSessions(ctx, s.Issuer, s.Subject, ""); err != nil || n != 0 {
		t.Errorf("the same logout again: got %d, %v, want 0, nil", n, err)
	}
}

// TestRedisProviderIndexDropsExpired: a person who signs in again and again does not grow the
// index of their sessions with expired ones.
func TestRedisProviderIndexDropsExpired(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	clock := newFakeClock(t)
	r := NewRedisStore(c, prefix, clock.timing())
	ctx := context.Background()
	for range 3 {
		s := newSessionAt(clock.Now(), 50*time.Millisecond)
		s.Issuer, s.Subject = "https://idp.example.com", "alice"
		if err := r.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		clock.Advance(60 * time.Millisecond)
	}
	s := newSessionAt(clock.Now(), time.Hour)
	s.Issuer, s.Subject = "https://idp.example.com", "alice"
	if err := r.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ZCard(ctx, r.subjectIndexKey(s.Issuer, s.Subject)).Result(); err != nil || n != 1 {
		t.Errorf("index after three expired sessions and a live one: got %d members, %v, want 1", n, err)
	}
}

func TestRedisCheckWarmCostsNoCommand(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	counter := &commandCounter{}
	c.AddHook(counter)
	a, b := subscribedStore(t, c, prefix, DefaultTiming()), subscribedStore(t, c, prefix, DefaultTiming())
	ctx := context.Background()
	s := newSession(time.Hour)
	if err := a.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	before := counter.commands.Load()
	for range 100 {
		if err := a.Check(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := counter.commands.Load() - before; got != 0 {
		t.Errorf("100 checks on the creating instance: got %d commands, want 0", got)
	}
	before = counter.commands.Load()
	for range 100 {
		if err := b.Check(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := counter.commands.Load() - before; got != 1 {
		t.Errorf("100 checks on another instance: got %d commands, want 1", got)
	}
}

func TestRedisUnavailableFailsFast(t *testing.T) {
	t.Parallel()
	counter := &commandCounter{}
	// Without retries each failure is quick; the store must not depend on that.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond,
		MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	c.AddHook(counter)
	clock := newFakeClock(t)
	r := NewRedisStore(c, "test:session:unreachable:", clock.timing())
	ctx := context.Background()
	s := newSessionAt(clock.Now(), time.Hour)

	if err := r.Check(ctx, s); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first check: got %v, want %v", err, ErrUnavailable)
	}
	tried := counter.commands.Load()
	if tried == 0 {
		t.Fatal("first check: got no command tried, want one")
	}
	start := time.Now()
	for range 100 {
		if err := r.Check(ctx, s); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("check right after a failure: got %v, want %v", err, ErrUnavailable)
		}
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("100 checks right after a failure took %v, want under 50ms", took)
	}
	if err := r.Create(ctx, newSessionAt(clock.Now(), time.Hour)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("create right after a failure: got %v, want %v", err, ErrUnavailable)
	}
	if _, err := r.Claim(ctx, "k", time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("claim right after a failure: got %v, want %v", err, ErrUnavailable)
	}
	if got := counter.commands.Load(); got != tried {
		t.Errorf("got %d commands tried right after a failure, want none", got-tried)
	}

	// Sign-out still ends the session here at once.
	if err := r.Revoke(ctx, s); !errors.Is(err, ErrUnavailable) {
		t.Errorf("revoke: got %v, want %v", err, ErrUnavailable)
	}
	if err := r.Check(ctx, s); !errors.Is(err, ErrRevoked) {
		t.Errorf("check after revoke: got %v, want %v", err, ErrRevoked)
	}
	if len(r.pending) != 1 {
		t.Errorf("got %d pending revocations, want 1", len(r.pending))
	}

	// Ping always tries, for readiness probes.
	if err := r.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ping: got %v, want %v", err, ErrUnavailable)
	}
	if got := counter.commands.Load(); got == tried {
		t.Error("ping right after a failure: got no command tried, want one")
	}

	// A second later one of many parallel checks tries Redis again.
	clock.Advance(r.timing.DownFor)
	tried = counter.commands.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := r.Check(ctx, newSessionAt(clock.Now(), time.Hour)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("check a second later: got %v, want %v", err, ErrUnavailable)
			}
		})
	}
	wg.Wait()
	if got := counter.commands.Load() - tried; got != 1 {
		t.Errorf("20 parallel checks a second later: got %d commands tried, want 1", got)
	}
}

// proxiedRedis returns a client that reaches Redis through a proxy the test can stop.
func proxiedRedis(t *testing.T) (*redis.Client, *tcpProxy) {
	t.Helper()
	p := newTCPProxy(t, redisAddr)
	// One try per command and per dial, as headgate's own client: go-redis's default retries
	// back off for a while after Redis vanishes. The timeouts end reads that a blackholed
	// connection never answers.
	c := redis.NewClient(&redis.Options{Addr: p.addr, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c, p
}

func TestRedisPendingRevocationAppliedOnRecovery(t *testing.T) {
	t.Parallel()
	direct, prefix := testRedis(t)
	proxied, proxy := proxiedRedis(t)
	a := subscribedStore(t, proxied, prefix, quickTiming()) // loses Redis
	b := subscribedStore(t, direct, prefix, quickTiming())  // keeps it
	ctx := context.Background()
	s := newSession(time.Hour)
	shareSession(t, a, b, s)

	proxy.stop()
	if err := a.Revoke(ctx, s); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("revoke without Redis: got %v, want %v", err, ErrUnavailable)
	}
	if err := a.Check(ctx, s); !errors.Is(err, ErrRevoked) {
		t.Errorf("A after sign-out: got %v, want %v", err, ErrRevoked)
	}
	if err := b.Check(ctx, s); err != nil {
		t.Errorf("B while A cannot reach Redis: got %v, want nil", err)
	}

	proxy.start()
	took := waitFor(t, 10*time.Second, "pending sign-out reaching B", func() bool {
		return errors.Is(b.Check(ctx, s), ErrRevoked)
	})
	t.Logf("pending sign-out reached the other instance %v after Redis came back", took)
	if n, err := direct.Exists(ctx, prefix+"session:"+s.ID).Result(); err != nil || n != 0 {
		t.Errorf("record after recovery: got %d, %v, want 0, nil", n, err)
	}
	waitFor(t, 10*time.Second, "pending revocations applied", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.pending) == 0
	})
}

// TestRedisPendingRevocationFlushedOnStop: a sign-out Redis has not heard of is applied when the
// store stops, if Redis answers by then; otherwise Run reports it.
func TestRedisPendingRevocationFlushedOnStop(t *testing.T) {
	t.Parallel()
	direct, prefix := testRedis(t)
	for _, back := range []bool{true, false} {
		proxied, proxy := proxiedRedis(t)
		// The store's clock stands still: Run retries nothing by itself before it stops.
		clock := newFakeClock(t)
		a := NewRedisStore(proxied, prefix, clock.timing())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		s := newSessionAt(clock.Now(), time.Hour)
		if err := a.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		proxy.stop()
		if err := a.Revoke(context.Background(), s); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("revoke without Redis: got %v, want %v", err, ErrUnavailable)
		}
		if back {
			proxy.start()
		}
		cancel()
		err := <-done
		n, xerr := direct.Exists(context.Background(), prefix+"session:"+s.ID).Result()
		if xerr != nil {
			t.Fatal(xerr)
		}
		if back && (err != nil || n != 0) {
			t.Errorf("Redis back at stop: Run got %v and the record %d, want nil and 0", err, n)
		}
		if !back && (!errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "1 sign-outs") || n != 1) {
			t.Errorf("Redis still down at stop: Run got %v and the record %d, want 1 sign-out reported and the record left", err, n)
		}
	}
}

func TestRedisEmptiedRevokesOnResubscription(t *testing.T) {
	t.Parallel()
	direct, prefix := testRedis(t)
	proxied, proxy := proxiedRedis(t)
	r := subscribedStore(t, proxied, prefix, quickTiming())
	ctx := context.Background()
	s := newSession(time.Hour)
	if err := r.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx, s); err != nil {
		t.Fatalf("before the restart: got %v, want nil", err)
	}

	// Redis restarts without persistence.
	gen := r.gen.Load()
	proxy.stop()
	deletePrefix(t, direct, prefix)
	proxy.start()
	waitSubscribed(t, r, gen)
	if err := r.Check(ctx, s); !errors.Is(err, ErrRevoked) {
		t.Errorf("after Redis came back empty: got %v, want %v", err, ErrRevoked)
	}
}

func TestRedisSilentConnectionLossDetected(t *testing.T) {
	t.Parallel()
	proxied, proxy := proxiedRedis(t)
	timing := quickTiming()
	timing.PingInterval = 50 * time.Millisecond
	r := subscribedStore(t, proxied, "test:session:"+NewID()+":", timing)

	// A quiet but healthy subscription is kept: pinged, it answers. A ping is sent only once
	// the one before was answered, so the third ping proves two answers.
	gen := r.gen.Load()
	pings := proxy.pings.Load()
	waitFor(t, 10*time.Second, "three pings of a quiet subscription", func() bool { return proxy.pings.Load()-pings >= 3 })
	if got := r.gen.Load(); got != gen || !r.subscribed.Load() {
		t.Fatalf("after two pings answered: got generation %d, subscribed %v, want %d, true", got, r.subscribed.Load(), gen)
	}

	// A connection that silently stops answering is noticed by its unanswered ping.
	proxy.blackhole.Store(true)
	took := waitFor(t, 10*time.Second, "silent connection loss noticed", func() bool { return !r.subscribed.Load() })
	t.Logf("silent connection loss noticed after %v", took)
	proxy.blackhole.Store(false)
	waitSubscribed(t, r, gen)
}

func TestRedisGenerationRecheck(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	counter := &commandCounter{}
	c.AddHook(counter)
	r := subscribedStore(t, c, prefix, DefaultTiming())
	ctx := context.Background()
	live, gone := newSession(time.Hour), newSession(time.Hour)
	for _, s := range []*Session{live, gone} {
		if err := r.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Del(ctx, prefix+"session:"+gone.ID).Err(); err != nil {
		t.Fatal(err)
	}
	// Without a missed message the local view is trusted.
	if err := r.Check(ctx, gone); err != nil {
		t.Fatalf("before a resubscription: got %v, want nil", err)
	}
	// A resubscription: what was confirmed before is looked up once more.
	r.gen.Add(1)
	before := counter.commands.Load()
	if err := r.Check(ctx, gone); !errors.Is(err, ErrRevoked) {
		t.Errorf("gone after a resubscription: got %v, want %v", err, ErrRevoked)
	}
	for range 3 {
		if err := r.Check(ctx, live); err != nil {
			t.Errorf("live after a resubscription: got %v, want nil", err)
		}
	}
	if got := counter.commands.Load() - before; got != 2 {
		t.Errorf("got %d commands after a resubscription, want 2 (one lookup per session)", got)
	}
}

func TestRedisWithoutSubscriptionTrustsOneSecond(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	clock := newFakeClock(t)
	r := NewRedisStore(c, prefix, clock.timing()) // no Run: no subscription
	ctx := context.Background()
	s := newSessionAt(clock.Now(), time.Hour)
	if err := r.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	other := NewRedisStore(c, prefix, clock.timing())
	if err := other.Revoke(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The store's time moves in steps until it looks the session up again.
	trust, limit, step := r.timing.UnsubscribedTrust, r.timing.UnsubscribedTrust+500*time.Millisecond, 10*time.Millisecond
	took := time.Duration(0)
	for !errors.Is(r.Check(ctx, s), ErrRevoked) {
		if took > limit {
			t.Fatalf("sign-out without a subscription: not within %v", limit)
		}
		clock.Advance(step)
		took += step
	}
	if took < trust/2 {
		t.Errorf("the live answer was trusted for %v, want about %v", took, trust)
	}
}

func TestRedisRevocationRacingLookup(t *testing.T) {
	v := newLocalView()
	now := time.Now()
	// A revocation message arrives while a lookup that saw the record is in flight.
	v.revoke("id", now.Add(DefaultTiming().Tombstone))
	v.confirm("id", 1, now, now.Add(time.Hour))
	if e, _ := v.get("id"); !e.revoked() {
		t.Error("got live, want the revocation kept")
	}
}

func TestRedisPrune(t *testing.T) {
	r := NewRedisStore(nil, "test:session:prune:", DefaultTiming())
	now := time.Now()
	r.local.confirm("live", 1, now, now.Add(time.Hour))
	r.local.confirm("expired", 1, now, now.Add(time.Minute))
	r.local.revoke("tombstone", now.Add(r.timing.Tombstone))
	r.local.revoke("revoked", now.Add(time.Hour))
	r.pending["pending-expired"] = now.Add(time.Minute)
	r.pending["pending"] = now.Add(time.Hour)
	r.prune(now.Add(2 * time.Minute))
	for id, want := range map[string]bool{"live": true, "expired": false, "tombstone": false, "revoked": true} {
		if _, got := r.local.get(id); got != want {
			t.Errorf("entry %s kept: got %v, want %v", id, got, want)
		}
	}
	if _, ok := r.pending["pending"]; !ok || len(r.pending) != 1 {
		t.Errorf("got pending %v, want only the unexpired one", r.pending)
	}
}

func BenchmarkRedisCheckWarm(b *testing.B) {
	c, prefix := testRedis(b)
	r := subscribedStore(b, c, prefix, DefaultTiming())
	ctx := context.Background()
	s := newSession(time.Hour)
	if err := r.Create(ctx, s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Check(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisCheckWarmParallel(b *testing.B) {
	c, prefix := testRedis(b)
	r := subscribedStore(b, c, prefix, DefaultTiming())
	ctx := context.Background()
	sessions := make([]*Session, 1000)
	for i := range sessions {
		sessions[i] = newSession(time.Hour)
		if err := r.Create(ctx, sessions[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := r.Check(ctx, sessions[i%len(sessions)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
