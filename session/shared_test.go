package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSharedOnceForAll: instances sharing Redis that ask for a value at the same time all get
// the one value that was stored first, kept for its ttl.
func TestSharedOnceForAll(t *testing.T) {
	client, prefix := testRedis(t)
	ctx := context.Background()
	var made atomic.Int32
	values := make([]string, 8)
	var wg sync.WaitGroup
	for i := range values {
		store := NewRedisStore(client, prefix, DefaultTiming())
		wg.Go(func() {
			v, err := store.Shared(ctx, "key", time.Hour, func() ([]byte, error) {
				made.Add(1)
				return []byte(NewID()), nil
			})
			if err != nil {
				t.Error(err)
			}
			values[i] = string(v)
		})
	}
	wg.Wait()
	for _, v := range values {
		if v == "" || v != values[0] {
			t.Fatalf("instances got different values: %q", values)
		}
	}
	if ttl := client.PTTL(ctx, prefix+"shared:key").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("kept for %v, want an hour", ttl)
	}
	t.Logf("%d of %d instances made a value; one was kept", made.Load(), len(values))

	failing := errors.New("no randomness")
	if _, err := NewRedisStore(client, prefix, DefaultTiming()).Shared(ctx, "other", time.Hour, func() ([]byte, error) { return nil, failing }); !errors.Is(err, failing) {
		t.Errorf("create failed: got %v, want it returned", err)
	}
	if n := client.Exists(ctx, prefix+"shared:other").Val(); n != 0 {
		t.Error("a failed create stored something")
	}
}

func TestSharedMemory(t *testing.T) {
	clock := newFakeClock(t)
	m := NewMemoryStore(clock.timing())
	a, err := m.Shared(context.Background(), "key", time.Hour, func() ([]byte, error) { return []byte("first"), nil })
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Shared(context.Background(), "key", time.Hour, func() ([]byte, error) { return []byte("second"), nil })
	if err != nil || string(a) != "first" || string(b) != "first" {
		t.Errorf("got %q, %q, %v, want the first value twice", a, b, err)
	}
	clock.Advance(time.Hour)
	c, err := m.Shared(context.Background(), "key", time.Hour, func() ([]byte, error) { return []byte("third"), nil })
	if err != nil || string(c) != "third" {
		t.Errorf("after its ttl: got %q, %v, want a new value", c, err)
	}
}

// TestSealValue: a sealed value opens with the secret it was sealed with, also after that
// secret was rotated to second place, and never for another purpose, with another secret or
// altered.
func TestSealValue(t *testing.T) {
	old := newTestCookies(t, true, secretA)
	sealed, err := old.SealValue("assertion key", []byte("private key bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "private") {
		t.Fatalf("sealed value shows its content: %q", sealed)
	}
	rotated := newTestCookies(t, true, secretB, secretA)
	for name, c := range map[string]*Cookies{"same secret": old, "rotated": rotated} {
		if v, err := c.OpenValue("assertion key", sealed); err != nil || string(v) != "private key bytes" {
			t.Errorf("%s: got %q, %v", name, v, err)
		}
	}
	other := newTestCookies(t, true, secretB)
	for name, try := range map[string]func() ([]byte, error){
		"other purpose": func() ([]byte, error) { return old.OpenValue("other", sealed) },
		"other secret":  func() ([]byte, error) { return other.OpenValue("assertion key", sealed) },
		"altered":       func() ([]byte, error) { return old.OpenValue("assertion key", sealed[:len(sealed)-2]+"AA") },
	} {
		if v, err := try(); err == nil {
			t.Errorf("%s: opened as %q", name, v)
		}
	}
	if _, err := old.open(sealed); err == nil {
		t.Error("a sealed value opened as a session cookie")
	}
}
