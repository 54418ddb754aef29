package linker

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

func BenchmarkResolveHot(b *testing.B) {
	f := newFakeHeadscale(b)
	f.add("alice", "alice@example.com", oidcID("alice-sub"))
	l := newTestLinker(f, Config{}, nil)
	id := identity("alice-sub", "alice@example.com")
	ctx := context.Background()
	if _, err := l.Resolve(ctx, id); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Resolve(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Resolve(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	if got := f.calls.Load(); got != 1 {
		b.Errorf("listings: got %d, want 1", got)
	}
}

// bigDirectory is n users as a large Headscale has them: half created by OIDC sign-ins, half
// with the CLI.
func bigDirectory(n int) []User {
	users := make([]User, n)
	for i := range users {
		u := User{ID: fmt.Sprint(i + 1), Name: fmt.Sprintf("user%06d", i), DisplayName: fmt.Sprintf("User %d", i),
			Email: fmt.Sprintf("user%06d@example.com", i)}
		if i%2 == 0 {
			u.ProviderID = oidcID(fmt.Sprintf("6f1c2a9e-%04x-4b8e-9d1a-%012x", i%0xffff, i))
			u.Provider = "oidc"
		}
		users[i] = u
	}
	return users
}

// BenchmarkResolveCold resolves an identity that nothing has cached against a Headscale of
// 100,000 users: one listing over HTTP, decoded and indexed. Its parts are measured alone too.
func BenchmarkResolveCold(b *testing.B) {
	const n = 100_000
	f := newFakeHeadscale(b)
	users := bigDirectory(n)
	f.change(func(f *fakeHeadscale) { f.users = users })
	f.mu.Lock()
	body := f.encodedLocked()
	f.mu.Unlock()
	target := users[n/2]
	id := Identity{Issuer: testIssuer, Subject: target.ProviderID[len(testIssuer)+1:]}
	ctx := context.Background()

	b.Run("resolve", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l := New(defaulted(Config{}), f.client(30*time.Second, 0), nil, Timing{})
			link, err := l.Resolve(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if link.UserID != target.ID {
				b.Fatalf("link: got %+v, want user %s", link, target.ID)
			}
		}
		b.ReportMetric(float64(len(body))/(1<<20), "MiB/listing")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := decodeUsers(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			newDirectory(users, time.Now())
		}
	})
}

func BenchmarkProviderID(b *testing.B) {
	tests := []struct{ name, iss, sub string }{
		{"clean", "http://127.0.0.1:5556/dex", "CiRjMGExNzEyOS0xZWRkLTQ3ZmYtOWI5ZC1kNzQ5ZjQwN2E1NjgSBWxvY2Fs"},
		{"needs-cleaning", "HTTPS://tenant.auth0.com//", "auth0|64b7f3a1c2d4e5f6a7b8c9d0"},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ProviderID(tt.iss, tt.sub)
			}
		})
	}
}
