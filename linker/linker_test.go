package linker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestResolveHotPathCostsNoRequest is not parallel: AllocsPerRun refuses to run beside others.
func TestResolveHotPathCostsNoRequest(t *testing.T) {
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	l := newTestLinker(f, Config{}, nil)
	id := identity("alice-sub", "alice@example.com")
	first := mustResolve(t, l, id)
	for range 1000 {
		if got := mustResolve(t, l, id); !reflect.DeepEqual(got, first) {
			t.Fatalf("link: got %+v, want %+v", got, first)
		}
	}
	wantCalls(t, f, 1, "listings")
	allocs := testing.AllocsPerRun(100, func() { l.Resolve(context.Background(), id) })
	if allocs > 0 {
		t.Errorf("allocations per hot Resolve: got %v, want 0", allocs)
	}
}

func TestResolveNegativeTTL(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	clock := newFakeClock(t)
	l := newClockedLinker(f, Config{NegativeTTL: 100 * time.Millisecond}, nil, clock.timing())
	id := identity("erin-sub", "erin@example.com")
	if got := mustResolve(t, l, id); got.Linked() {
		t.Fatalf("before the user exists: got %+v, want unlinked", got)
	}
	f.add("erin", "erin@example.com", oidcID("erin-sub"))
	if got := mustResolve(t, l, id); got.Linked() {
		t.Errorf("within negative_ttl: got %+v, want the remembered unlinked answer", got)
	}
	wantCalls(t, f, 1, "listings within negative_ttl")
	clock.Advance(120 * time.Millisecond)
	if got := mustResolve(t, l, id); got.UserName != "erin" {
		t.Errorf("after negative_ttl: got %+v, want erin", got)
	}
}

func TestResolveRenameAndDeleteAfterTTL(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	u := f.add("alice", "alice@example.com", oidcID("alice-sub"))
	// The default list_max_age (5s) is far longer than the TTL: a re-check must still list anew.
	clock := newFakeClock(t)
	l := newClockedLinker(f, Config{TTL: 50 * time.Millisecond}, nil, clock.timing())
	id := identity("alice-sub", "alice@example.com")
	mustResolve(t, l, id)
	f.change(func(f *fakeHeadscale) { f.users[0].Name = "alice2" })
	if got := mustResolve(t, l, id); got.UserName != "alice" {
		t.Errorf("within ttl: got %q, want alice", got.UserName)
	}
	clock.Advance(70 * time.Millisecond)
	if got := mustResolve(t, l, id); got.UserName != "alice2" || got.UserID != u.ID {
		t.Errorf("after ttl: got %+v, want alice2", got)
	}
	f.change(func(f *fakeHeadscale) { f.users = nil })
	clock.Advance(70 * time.Millisecond)
	if got := mustResolve(t, l, id); got.Linked() {
		t.Errorf("after deletion and ttl: got %+v, want unlinked", got)
	}
	wantCalls(t, f, 3, "listings")
}

func TestResolveConcurrentShareOneListing(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	for i := range 100 {
		f.add(fmt.Sprintf("user%d", i), "", oidcID(fmt.Sprintf("sub-%d", i)))
	}
	f.change(func(f *fakeHeadscale) { f.delay = 50 * time.Millisecond })
	l := newTestLinker(f, Config{}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			link, err := l.Resolve(context.Background(), identity(fmt.Sprintf("sub-%d", i), ""))
			if err == nil && link.UserName != fmt.Sprintf("user%d", i) {
				err = fmt.Errorf("sub-%d: got user %q, want user%d", i, link.UserName, i)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantCalls(t, f, 1, "listings for 100 concurrent identities")
}

func TestResolveListingReusedForOthers(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("a", "", oidcID("a"))
	f.add("b", "", oidcID("b"))
	clock := newFakeClock(t)
	l := New(defaulted(Config{}), f.client(time.Second, 100*time.Millisecond), nil, clock.timing())
	mustResolve(t, l, identity("a", ""))
	mustResolve(t, l, identity("b", ""))
	wantCalls(t, f, 1, "listings within list_max_age")
	clock.Advance(120 * time.Millisecond)
	mustResolve(t, l, identity("c", ""))
	wantCalls(t, f, 2, "listings after list_max_age")
}

func TestResolveDownServesStaleAndBacksOff(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	clock := newFakeClock(t)
	timing := clock.timing()
	timing.RetryAfter = 200 * time.Millisecond
	l := newClockedLinker(f, Config{TTL: 50 * time.Millisecond}, nil, timing)
	id := identity("alice-sub", "alice@example.com")
	first := mustResolve(t, l, id)
	f.change(func(f *fakeHeadscale) { f.status = 503 })
	clock.Advance(60 * time.Millisecond)

	if got := mustResolve(t, l, id); !reflect.DeepEqual(got, first) {
		t.Errorf("stale link while down: got %+v, want %+v", got, first)
	}
	if got := f.calls.Load(); got != 2 {
		t.Fatalf("listings: got %d, want 2 (one failed)", got)
	}
	for range 50 {
		if got := mustResolve(t, l, id); !reflect.DeepEqual(got, first) {
			t.Fatalf("stale link during back-off: got %+v, want %+v", got, first)
		}
	}
	wantCalls(t, f, 2, "listings during back-off")
	clock.Advance(260 * time.Millisecond)
	mustResolve(t, l, id)
	wantCalls(t, f, 3, "listings after back-off")
	f.change(func(f *fakeHeadscale) { f.status = 0 })
	clock.Advance(260 * time.Millisecond)
	if got := mustResolve(t, l, id); !got.ResolvedAt.After(first.ResolvedAt) {
		t.Errorf("after recovery: got ResolvedAt %v, want later than %v", got.ResolvedAt, first.ResolvedAt)
	}
}

func TestResolveDownWithoutLinkFailsWithinTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	f.change(func(f *fakeHeadscale) { f.delay = 3 * time.Second })
	l := New(defaulted(Config{}), f.client(100*time.Millisecond, 0), nil, Timing{})
	start := time.Now()
	_, err := l.Resolve(context.Background(), identity("alice-sub", ""))
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error: got %v, want ErrUnavailable", err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("took: got %v, want about the 100ms timeout", took)
	}

	// Errors are not cached: once Headscale answers, so does Resolve. The failed listing may
	// still be winding down, and a caller arriving before it ends would share its failure. On a
	// loaded machine an attempt may itself run out of the 100ms: it then took the whole
	// timeout, which an error answered from memory would not, and is tried again.
	f.change(func(f *fakeHeadscale) { f.delay = 0 })
	for attempt := 1; ; attempt++ {
		waitListing(l)
		start := time.Now()
		got, err := l.Resolve(context.Background(), identity("alice-sub", ""))
		if err == nil {
			if got.UserName != "alice" {
				t.Errorf("after recovery: got %+v, want alice", got)
			}
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 100*time.Millisecond || attempt == 20 {
			t.Fatalf("after recovery: got %v, want alice", err)
		}
	}
}

func TestResolveDownSharesOneCall(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.change(func(f *fakeHeadscale) { f.delay, f.status = 200*time.Millisecond, 503 })
	l := newTestLinker(f, Config{}, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	for i := range 20 {
		wg.Go(func() {
			_, err := l.Resolve(context.Background(), identity(fmt.Sprintf("sub-%d", i), ""))
			if errors.Is(err, ErrUnavailable) {
				mu.Lock()
				failures++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failures != 20 {
		t.Errorf("ErrUnavailable: got %d of 20, want 20", failures)
	}
	wantCalls(t, f, 1, "listings while down")
}

func TestResolveBadKey(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	const wrong = "hskey-api-not-the-key"
	l := New(defaulted(Config{}), NewHeadscale(defaulted(HeadscaleConfig{URL: f.srv.URL, APIKey: wrong}), nil), nil, Timing{})
	_, err := l.Resolve(context.Background(), identity("alice-sub", ""))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Errorf("error: got %v, want ErrUnavailable with status 401", err)
	}
	if err != nil && strings.Contains(err.Error(), wrong) {
		t.Errorf("error: got %q, want no API key in it", err)
	}
}

func TestResolveMalformedList(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.change(func(f *fakeHeadscale) { f.raw = []byte(`{"users":[{"id":"1","name":`) })
	_, err := newTestLinker(f, Config{}, nil).Resolve(context.Background(), identity("alice-sub", ""))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error: got %v, want ErrUnavailable", err)
	}
}

func TestResolveCallerGivesUp(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice", "", oidcID("alice-sub"))
	f.change(func(f *fakeHeadscale) { f.delay = 200 * time.Millisecond })
	l := newTestLinker(f, Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := l.Resolve(ctx, identity("alice-sub", ""))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("error: got %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
	// The listing carried on for whoever else waits, and its answer is kept.
	if !waitFor(func() bool { return l.local.get(identityKey{testIssuer, "alice-sub"}) != nil }) {
		t.Fatal("the shared resolution never kept a link")
	}
	f.change(func(f *fakeHeadscale) { f.status = 503 })
	if got := mustResolve(t, l, identity("alice-sub", "")); got.UserName != "alice" {
		t.Errorf("after the shared listing finished: got %+v, want alice", got)
	}
	wantCalls(t, f, 1, "listings")
}

func TestResolveRejectsEmptyIdentity(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	l := newTestLinker(f, Config{}, nil)
	for _, id := range []Identity{{}, {Issuer: testIssuer}, {Subject: "x"}} {
		if _, err := l.Resolve(context.Background(), id); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("resolve %+v: got %v, want an error that is not ErrUnavailable", id, err)
		}
	}
	wantCalls(t, f, 0, "listings")
}

func TestResolveSharedCache(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	f1, f2 := newFakeHeadscale(t), newFakeHeadscale(t)
	for _, f := range []*fakeHeadscale{f1, f2} {
		f.add("alice", "alice@example.com", oidcID("alice-sub"))
	}
	a := newTestLinker(f1, Config{}, NewRedisCache(c, prefix))
	b := newTestLinker(f2, Config{}, NewRedisCache(c, prefix))
	id := identity("alice-sub", "alice@example.com")
	fromA := mustResolve(t, a, id)
	fromB := mustResolve(t, b, id)
	if fromA.UserID != fromB.UserID || fromA.UserName != fromB.UserName || !fromA.ResolvedAt.Equal(fromB.ResolvedAt) {
		t.Errorf("link on the second instance: got %+v, want %+v", fromB, fromA)
	}
	wantCalls(t, f2, 0, "listings by the second instance")
	// The key is the documented one.
	if n, err := c.Exists(context.Background(), prefix+"link:v2:"+oidcID("alice-sub")).Result(); err != nil || n != 1 {
		t.Errorf("key %q: got exists=%d (%v), want 1", prefix+"link:v2:"+oidcID("alice-sub"), n, err)
	}
}

func TestResolveStaleFromSharedCacheWhileDown(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	clock := newFakeClock(t)
	cfg := Config{TTL: 50 * time.Millisecond}
	id := identity("alice-sub", "alice@example.com")
	first := mustResolve(t, newClockedLinker(f, cfg, NewRedisCache(c, prefix), clock.timing()), id)
	f.change(func(f *fakeHeadscale) { f.status = 500 })
	clock.Advance(60 * time.Millisecond)
	// A new instance, with nothing in process, while Headscale is failing.
	b := newClockedLinker(f, cfg, NewRedisCache(c, prefix), clock.timing())
	got := mustResolve(t, b, id)
	if got.UserID != first.UserID || !got.ResolvedAt.Equal(first.ResolvedAt) {
		t.Errorf("stale link from the shared cache: got %+v, want %+v", got, first)
	}
	calls := f.calls.Load()
	mustResolve(t, b, id)
	if got := f.calls.Load(); got != calls {
		t.Errorf("listings during back-off: got %d, want %d", got, calls)
	}
}

func TestResolveCacheDownIsNotFatal(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond,
		MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { dead.Close() })
	f := newFakeHeadscale(t)
	f.add("alice", "", oidcID("alice-sub"))
	got := mustResolve(t, newTestLinker(f, Config{}, NewRedisCache(dead, "x:")), identity("alice-sub", ""))
	if got.UserName != "alice" {
		t.Errorf("link with Redis down: got %+v, want alice", got)
	}
}

func TestLocalLinksBounded(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	l := newTestLinker(f, Config{}, nil)
	l.local.max = 40
	for i := range 200 {
		mustResolve(t, l, identity(fmt.Sprintf("sub-%d", i), ""))
	}
	l.local.mu.RLock()
	n := len(l.local.links)
	l.local.mu.RUnlock()
	if n > 40 {
		t.Errorf("in-process links: got %d, want at most 40", n)
	}
	// The latest one is kept.
	calls := f.calls.Load()
	mustResolve(t, l, identity("sub-199", ""))
	if got := f.calls.Load(); got != calls {
		t.Errorf("listings for the latest identity: got %d, want %d", got, calls)
	}
}

func TestResolveCallerGivesUpWithStaleLink(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice", "", oidcID("alice-sub"))
	clock := newFakeClock(t)
	l := newClockedLinker(f, Config{TTL: 20 * time.Millisecond}, nil, clock.timing())
	id := identity("alice-sub", "")
	first := mustResolve(t, l, id)
	f.change(func(f *fakeHeadscale) { f.delay = 300 * time.Millisecond })
	clock.Advance(30 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	got, err := l.Resolve(ctx, id)
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("slow Headscale, caller out of time: got %+v, %v, want the stale link and nil", got, err)
	}
}

func TestSharedCacheSeparatesStrategies(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	f := newFakeHeadscale(t)
	f.add("bob", "bob@example.com", "")
	withEmail := newTestLinker(f, Config{Match: []string{"provider_id", "email"}}, NewRedisCache(c, prefix))
	withoutEmail := newTestLinker(f, Config{Match: []string{"provider_id"}}, NewRedisCache(c, prefix))
	id := Identity{Issuer: testIssuer, Subject: "bob-sub", Email: "bob@example.com", EmailVerified: true}
	if got := mustResolve(t, withEmail, id); got.UserName != "bob" {
		t.Fatalf("with email matching: got %+v, want bob", got)
	}
	if got := mustResolve(t, withoutEmail, id); got.Linked() {
		t.Errorf("an instance without email matching reused a link found by email: %+v", got)
	}
}

// TestResolveWhenListingTooLarge: past Headscale's message limit the full listing fails, and the
// linker finds the user with single lookups instead (by name for OIDC users, by email for CLI
// users), still checking the whole provider ID.
func TestResolveWhenListingTooLarge(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	f.add("alice", "other@example.com", ProviderID("https://other-idp.example.com", "alice-sub"))
	f.add("bob", "bob@example.com", "")
	f.change(func(f *fakeHeadscale) { f.tooLarge = true })
	l := newTestLinker(f, Config{Match: []string{"provider_id", "email"}}, nil)

	alice := Identity{Issuer: testIssuer, Subject: "alice-sub", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice"}
	if got := mustResolve(t, l, alice); got.UserID != "1" || got.Method != "provider_id" {
		t.Errorf("alice: got %+v, want user 1 by provider_id (not the other IdP's alice)", got)
	}
	bob := Identity{Issuer: testIssuer, Subject: "bob-sub", Email: "bob@example.com", EmailVerified: true, PreferredUsername: "bobby"}
	if got := mustResolve(t, l, bob); got.UserName != "bob" || got.Method != "email" {
		t.Errorf("bob: got %+v, want bob by email", got)
	}
	mallory := Identity{Issuer: testIssuer, Subject: "mallory-sub", Email: "mallory@example.com", EmailVerified: true, PreferredUsername: "alice"}
	if got := mustResolve(t, l, mallory); got.Linked() {
		t.Errorf("an identity named alice at another subject got %+v, want no user", got)
	}
	if f.filtered.Load() == 0 {
		t.Error("no filtered lookup was made")
	}
	// Only the first uncached identity paid for a failed full listing.
	if full := f.calls.Load() - f.filtered.Load(); full != 1 {
		t.Errorf("full listings tried: got %d, want 1", full)
	}
}

func TestListUsersTooLarge(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.change(func(f *fakeHeadscale) { f.tooLarge = true })
	_, err := f.client(time.Second, time.Second).ListUsers(context.Background())
	if !errors.Is(err, ErrListingTooLarge) {
		t.Errorf("got %v, want ErrListingTooLarge", err)
	}
}
