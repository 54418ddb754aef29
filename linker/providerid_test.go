package linker

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestProviderID(t *testing.T) {
	tests := []struct {
		name, iss, sub, want string
	}{
		{"dex", "http://127.0.0.1:5556/dex", "CiRjMGExNzEyOS0xZWRkLTQ3ZmYtOWI5ZC1kNzQ5ZjQwN2E1NjgSBWxvY2Fs",
			"http://127.0.0.1:5556/dex/CiRjMGExNzEyOS0xZWRkLTQ3ZmYtOWI5ZC1kNzQ5ZjQwN2E1NjgSBWxvY2Fs"},
		{"plain", "https://idp.example.com", "alice", "https://idp.example.com/alice"},
		{"issuer trailing slash", "https://idp.example.com/", "alice", "https://idp.example.com/alice"},
		{"issuer two trailing slashes", "https://idp.example.com//", "alice", "https://idp.example.com/alice"},
		{"subject leading slash", "https://idp.example.com", "/alice", "https://idp.example.com/alice"},
		{"both slashes", "https://idp.example.com/", "/alice", "https://idp.example.com/alice"},
		{"double slash in issuer path", "https://login.example.com//v2.0", "I-70OQnj3T", "https://login.example.com/v2.0/I-70OQnj3T"},
		{"subject with slashes", "https://idp.example.com", "a//b/", "https://idp.example.com/a/b"},
		{"surrounding whitespace", "  https://idp.example.com/ ", " alice\t", "https://idp.example.com/alice"},
		{"whitespace around segments", "https://idp.example.com/ realm /", " alice ", "https://idp.example.com/realm/alice"},
		{"upper-case scheme", "HTTPS://idp.example.com", "alice", "https://idp.example.com/alice"},
		{"host case kept", "https://IdP.Example.com", "Alice", "https://IdP.Example.com/Alice"},
		{"port", "http://localhost:8080/realms/x/", "u-1", "http://localhost:8080/realms/x/u-1"},
		{"subject needing escapes", "https://tenant.auth0.com/", "auth0|64b7f", "https://tenant.auth0.com/auth0%7C64b7f"},
		{"subject with space", "https://idp.example.com", "a b", "https://idp.example.com/a%20b"},
		{"subject with a question mark", "https://idp.example.com", "a?b", "https://idp.example.com/a?b"},
		{"newline inside is not a URL", "https://idp.example.com", "a\nb", "https:/idp.example.com/a\nb"},
		{"non-URL issuer", "oidc/", "sub/", "oidc/sub"},
		{"non-URL with whitespace", "   oidc/   ", "   sub   ", "oidc/sub"},
		{"empty issuer", "", "/sub", "sub"},
		{"empty subject", "https://idp.example.com/", "", "https://idp.example.com"},
		{"both empty", "", "", ""},
		{"only slashes", "/", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProviderID(tt.iss, tt.sub); got != tt.want {
				t.Errorf("ProviderID(%q, %q): got %q, want %q", tt.iss, tt.sub, got, tt.want)
			}
		})
	}
}

func TestCleanProviderIDStoredForms(t *testing.T) {
	// What Headscale 0.24 and 0.25 stored before cleaning existed, and what 0.26 made of it.
	tests := []struct{ stored, want string }{
		{"https://idp.example.com//alice", "https://idp.example.com/alice"},
		{"https://idp.example.com/realms/x//alice", "https://idp.example.com/realms/x/alice"},
		{"HTTP://idp.example.com/alice/", "http://idp.example.com/alice"},
		{" https://idp.example.com/alice ", "https://idp.example.com/alice"},
		{"https://idp.example.com///", "https://idp.example.com"},
		{"///", ""},
		{"/path//to///resource", "path/to/resource"},
		{"ldap://example.org//path//to//resource", "ldap://example.org/path/to/resource"},
	}
	for _, tt := range tests {
		if got := cleanProviderID(tt.stored); got != tt.want {
			t.Errorf("cleanProviderID(%q): got %q, want %q", tt.stored, got, tt.want)
		}
	}
}

// TestCleanShortcutAgrees checks the allocation-free shortcut against the full cleaning on
// strings built from the characters that matter to either.
func TestCleanShortcutAgrees(t *testing.T) {
	pieces := []string{"https://", "HTTP://", "h", "x", "Y", "0", "9", ".", "-", "_", "~", ":", ":80", "/", "//",
		" ", "\t", "\n", "%", "%2F", "%7c", "|", "?", "#", "@", "[", "]", "+", "é", "ftp://", "a.b-c://", "://"}
	r := rand.New(rand.NewPCG(1, 2))
	shortcuts := 0
	for range 50_000 {
		var b strings.Builder
		for range 1 + r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		if isCleanURL(s) {
			shortcuts++
		}
		if got, want := cleanProviderID(s), cleanSlow(s); got != want {
			t.Fatalf("cleanProviderID(%q): got %q, want %q", s, got, want)
		}
	}
	if shortcuts == 0 {
		t.Errorf("shortcut taken: got 0 times, want some")
	}
}

func FuzzCleanProviderID(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:5556/dex/CiRjMGEx", "https://a.example.com/x/y", "https://a:1/b",
		"https://a:/b", "https://a/./..", "https://a/b%2Fc", "oidc/sub", "HTTPS://A/B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := cleanProviderID(s), cleanSlow(s); got != want {
			t.Errorf("cleanProviderID(%q): got %q, want %q", s, got, want)
		}
	})
}
