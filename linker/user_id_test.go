package linker

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestResolveUser: a user ID the tailnet names resolves to that user, with its name checked for
// a twin as a sign-in's link is, from the listing or, when the listing is too large, from a
// lookup by ID; a user Headscale no longer lists is unlinked once the TTL has passed; and the
// link is kept apart from any sign-in's.
func TestResolveUser(t *testing.T) {
	t.Parallel()
	for _, tooLarge := range []bool{false, true} {
		f := newFakeHeadscale(t)
		alice := f.add("alice", "alice@example.com", oidcID("alice-sub"))
		carol := f.add("carol", "carol@example.com", "")
		twin := f.add("carol", "", "")
		f.change(func(f *fakeHeadscale) { f.tooLarge = tooLarge })
		clock := newFakeClock(t)
		l := newClockedLinker(f, Config{TTL: 50 * time.Millisecond, NegativeTTL: 50 * time.Millisecond}, nil, clock.timing())
		ctx := context.Background()

		got, err := l.ResolveUser(ctx, alice.ID)
		if err != nil || got.UserID != alice.ID || got.UserName != "alice" || got.Email != "alice@example.com" || got.Method != "user_id" || got.NameShared() {
			t.Errorf("too large %v: alice: got %+v, %v; want alice by user_id", tooLarge, got, err)
		}
		if got, err := l.ResolveUser(ctx, carol.ID); err != nil || !slices.Equal(got.NameSharedWith, []string{twin.ID}) {
			t.Errorf("too large %v: carol: got %+v, %v; want shared with %s", tooLarge, got, err, twin.ID)
		}
		if got, err := l.ResolveUser(ctx, "99"); err != nil || got.Linked() || got.Reason != "no user with this id" {
			t.Errorf("too large %v: unknown id: got %+v, %v; want unlinked", tooLarge, got, err)
		}
		if _, err := l.ResolveUser(ctx, ""); err == nil {
			t.Errorf("too large %v: empty id: got no error", tooLarge)
		}
		// A sign-in whose subject is alice's ID is not alice's device.
		if got := mustResolve(t, l, identity(alice.ID, "")); got.Linked() {
			t.Errorf("too large %v: sign-in with subject %q: got %+v, want unlinked", tooLarge, alice.ID, got)
		}

		f.change(func(f *fakeHeadscale) { f.users = f.users[1:] })
		if got, _ := l.ResolveUser(ctx, alice.ID); got.UserID != alice.ID {
			t.Errorf("too large %v: deleted, within ttl: got %+v, want alice still", tooLarge, got)
		}
		clock.Advance(70 * time.Millisecond)
		if got, err := l.ResolveUser(ctx, alice.ID); err != nil || got.Linked() {
			t.Errorf("too large %v: deleted, after ttl: got %+v, %v; want unlinked", tooLarge, got, err)
		}
	}
}
