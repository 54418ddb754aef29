package linker

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestCaches(t *testing.T) {
	t.Parallel()
	// Each cache comes with what moves its time on: a fake clock for the MemoryCache; nothing for
	// Redis, whose keys expire in real time.
	caches := map[string]func(t *testing.T) (Cache, func(time.Duration)){
		"memory": func(t *testing.T) (Cache, func(time.Duration)) {
			clock := newFakeClock(t)
			return NewMemoryCache(clock.timing()), clock.Advance
		},
		"redis": func(t *testing.T) (Cache, func(time.Duration)) {
			c, prefix := testRedis(t)
			return NewRedisCache(c, prefix), func(time.Duration) {}
		},
	}
	for name, newCache := range caches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, advance := newCache(t)
			if _, ok, err := c.Get(ctx, "missing"); ok || err != nil {
				t.Errorf("missing key: got ok=%v err=%v, want false, nil", ok, err)
			}
			want := Link{UserID: "42", UserName: "alice", DisplayName: "Alice Ä", Email: "a@example.com",
				Method: "email", NameSharedWith: []string{"7", "9"}, ResolvedAt: time.Now()}
			if err := c.Set(ctx, "k", want, time.Hour); err != nil {
				t.Fatal(err)
			}
			got, ok, err := c.Get(ctx, "k")
			if !ok || err != nil {
				t.Fatalf("stored key: got ok=%v err=%v, want true, nil", ok, err)
			}
			if !got.ResolvedAt.Equal(want.ResolvedAt) {
				t.Errorf("ResolvedAt: got %v, want exactly %v", got.ResolvedAt, want.ResolvedAt)
			}
			got.ResolvedAt = want.ResolvedAt
			if !reflect.DeepEqual(got, want) {
				t.Errorf("link: got %+v, want %+v", got, want)
			}

			// Long enough that a loaded machine still reads the Redis key back before it expires.
			const short = 300 * time.Millisecond
			unlinked := Link{Reason: "ambiguous email (2 users)", ResolvedAt: time.Now()}
			if err := c.Set(ctx, "short", unlinked, short); err != nil {
				t.Fatal(err)
			}
			if got, ok, _ := c.Get(ctx, "short"); !ok || got.Reason != unlinked.Reason || got.Linked() {
				t.Errorf("unlinked: got %+v (ok=%v), want %+v", got, ok, unlinked)
			}
			advance(short)
			var kept bool
			var getErr error
			if !waitFor(func() bool { _, kept, getErr = c.Get(ctx, "short"); return !kept && getErr == nil }) {
				t.Errorf("after its ttl: got ok=%v err=%v, want false, nil", kept, getErr)
			}
			if err := c.Set(ctx, "none", want, 0); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.Get(ctx, "none"); ok {
				t.Error("set with ttl 0: got a stored link, want none")
			}
		})
	}
}

func TestRedisCacheFormat(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	ctx := context.Background()
	rc := NewRedisCache(c, prefix)
	at := time.Unix(1767225600, 123456789)
	if err := rc.Set(ctx, "https://idp.example.com/alice", Link{UserID: "1", UserName: "alice", Method: "provider_id", ResolvedAt: at}, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	key := prefix + "link:https://idp.example.com/alice"
	raw, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"1","name":"alice","method":"provider_id","at":1767225600123456789}`; raw != want {
		t.Errorf("stored value: got %s, want %s", raw, want)
	}
	if ttl := c.PTTL(ctx, key).Val(); ttl <= time.Second || ttl > 1500*time.Millisecond {
		t.Errorf("PTTL: got %v, want just under 1.5s", ttl)
	}

	for _, bad := range []string{"not json", `{"id":"1"}`} {
		c.Set(ctx, prefix+"link:bad", bad, time.Minute)
		if _, _, err := rc.Get(ctx, "bad"); err == nil {
			t.Errorf("value %q: got nil error, want one", bad)
		}
	}
}

func TestMemoryCachePrunes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock(t)
	c := NewMemoryCache(clock.timing())
	for i := range minPruneAt - 1 {
		c.Set(ctx, fmt.Sprint(i), Link{}, time.Millisecond)
	}
	clock.Advance(5 * time.Millisecond)
	c.Set(ctx, "live", Link{UserID: "1"}, time.Hour)
	c.mu.Lock()
	n := len(c.links)
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("links after pruning: got %d, want 1", n)
	}
	if _, ok, _ := c.Get(ctx, "live"); !ok {
		t.Error("live link: got pruned, want kept")
	}
}
