package linker

import (
	"strings"
	"testing"
	"time"
)

func TestResolveProviderID(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("carol", "carol@example.com", "https://other-idp.example.com/alice-sub") // same sub, other IdP
	want := f.add("alice", "alice@example.com", oidcID("alice-sub"))
	l := newTestLinker(f, Config{}, nil)
	before := time.Now()
	got := mustResolve(t, l, identity("alice-sub", "alice@example.com"))
	if !got.Linked() || got.UserID != want.ID || got.UserName != "alice" || got.DisplayName != want.DisplayName ||
		got.Email != want.Email || got.Method != "provider_id" || got.Reason != "" {
		t.Errorf("link: got %+v, want user %s by provider_id", got, want.ID)
	}
	if got.ResolvedAt.Before(before) || got.ResolvedAt.After(time.Now()) {
		t.Errorf("ResolvedAt: got %v, want between %v and now", got.ResolvedAt, before)
	}
}

func TestResolveUncleanedProviderID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stored, issuer string
	}{
		{"0.24 with a trailing-slash issuer", "https://idp.example.com//alice", "https://idp.example.com/"},
		{"upper-case scheme and trailing slash", "HTTPS://idp.example.com/alice/", "https://idp.example.com"},
		{"issuer configured with a slash, stored clean", "https://idp.example.com/alice", "https://idp.example.com/"},
		{"padded", " https://idp.example.com/alice\n", "https://idp.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeHeadscale(t)
			u := f.add("alice", "alice@example.com", tt.stored)
			l := newTestLinker(f, Config{}, nil)
			got := mustResolve(t, l, Identity{Issuer: tt.issuer, Subject: "alice"})
			if got.UserID != u.ID || got.Method != "provider_id" {
				t.Errorf("link: got %+v, want user %s by provider_id", got, u.ID)
			}
		})
	}
}

func TestResolveEmail(t *testing.T) {
	t.Parallel()
	both := []string{"provider_id", "email"}
	tests := []struct {
		name       string
		match      []string
		users      [][3]string // name, email, providerId
		id         Identity
		wantUser   string // "" for unlinked
		wantMethod string
		wantReason string // contained in Reason when unlinked
	}{
		{"verified", both, [][3]string{{"bob", "bob@example.com", ""}},
			identity("bob-sub", "bob@example.com"), "bob", "email", ""},
		{"case-insensitive", both, [][3]string{{"bob", "Bob@Example.COM", ""}},
			identity("bob-sub", "bOB@example.com"), "bob", "email", ""},
		{"unverified", both, [][3]string{{"bob", "bob@example.com", ""}},
			Identity{Issuer: testIssuer, Subject: "bob-sub", Email: "bob@example.com"}, "", "", "email not verified"},
		{"no email claim", both, [][3]string{{"bob", "bob@example.com", ""}},
			Identity{Issuer: testIssuer, Subject: "bob-sub", EmailVerified: true}, "", "", "no email"},
		{"nobody has it", both, [][3]string{{"bob", "bob@example.com", ""}},
			identity("eve-sub", "eve@example.com"), "", "", "no user with this email"},
		{"ambiguous between CLI users", both, [][3]string{{"bob", "bob@example.com", ""}, {"bob2", "BOB@example.com", ""}},
			identity("bob-sub", "bob@example.com"), "", "", "ambiguous email (2 users)"},
		{"ambiguous with an OIDC user", both,
			[][3]string{{"bob", "bob@example.com", ""}, {"bob", "bob@example.com", "https://other.example.com/b"}, {"x", "bob@example.com", ""}},
			identity("bob-sub", "bob@example.com"), "", "", "ambiguous email (3 users)"},
		{"belongs to another identity", both, [][3]string{{"bob", "bob@example.com", "https://other.example.com/bob"}},
			identity("bob-sub", "bob@example.com"), "", "", "email belongs to the user of another identity"},
		{"email disabled", []string{"provider_id"}, [][3]string{{"bob", "bob@example.com", ""}},
			identity("bob-sub", "bob@example.com"), "", "", "no user with this provider id"},
		{"email only, own OIDC user", []string{"email"}, [][3]string{{"bob", "bob@example.com", oidcID("bob-sub")}},
			identity("bob-sub", "bob@example.com"), "bob", "email", ""},
		{"provider_id first", both,
			[][3]string{{"bob-cli", "bob@example.com", ""}, {"bob-oidc", "bob@corp.example.com", oidcID("bob-sub")}},
			identity("bob-sub", "bob@example.com"), "bob-oidc", "provider_id", ""},
		{"email first", []string{"email", "provider_id"},
			[][3]string{{"bob-cli", "bob@example.com", ""}, {"bob-oidc", "bob@corp.example.com", oidcID("bob-sub")}},
			identity("bob-sub", "bob@example.com"), "bob-cli", "email", ""},
		{"email first, falls through", []string{"email", "provider_id"},
			[][3]string{{"bob-oidc", "bob@corp.example.com", oidcID("bob-sub")}},
			identity("bob-sub", "bob@example.com"), "bob-oidc", "provider_id", ""},
		{"every reason", both, nil,
			identity("bob-sub", "bob@example.com"), "", "", "no user with this provider id; no user with this email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeHeadscale(t)
			for _, u := range tt.users {
				f.add(u[0], u[1], u[2])
			}
			got := mustResolve(t, newTestLinker(f, Config{Match: tt.match}, nil), tt.id)
			if got.UserName != tt.wantUser || got.Method != tt.wantMethod {
				t.Errorf("link: got user %q by %q (%+v), want %q by %q", got.UserName, got.Method, got, tt.wantUser, tt.wantMethod)
			}
			if tt.wantUser == "" && (got.Linked() || !strings.Contains(got.Reason, tt.wantReason)) {
				t.Errorf("reason: got %q, want one containing %q", got.Reason, tt.wantReason)
			}
		})
	}
}

func TestResolveEmptyNameFallsBack(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("", "dana@example.com", oidcID("dana-sub")) // as Headscale before 0.28 may send it
	got := mustResolve(t, newTestLinker(f, Config{}, nil), identity("dana-sub", ""))
	if got.UserName != "dana@example.com" {
		t.Errorf("user name: got %q, want the email", got.UserName)
	}
}

func TestResolveProviderIDSharedAfterCleaning(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.add("alice-old", "", "https://idp.example.com//alice")
	f.add("alice-new", "", "https://idp.example.com/alice")
	got := mustResolve(t, newTestLinker(f, Config{}, nil), Identity{Issuer: "https://idp.example.com", Subject: "alice"})
	if got.Linked() || got.Reason != "provider id shared by several users" {
		t.Errorf("link: got %+v, want unlinked: provider id shared by several users", got)
	}
}
