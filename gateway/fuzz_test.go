package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeRedirect checks the one property that matters: whatever rd is, the browser is sent to
// this gateway's origin or to an allowed host, never anywhere else. The target is resolved the
// way a browser resolves a Location header.
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{"/", "/admin?x=1#y", "//evil.com", "/\\evil.com", "https://evil.com",
		"https:evil.com", "/%2f%2fevil.com", "/\t/evil.com", "https://app.example.com/x", "\uff0f\uff0fevil.com",
		"https://gate.example.com@evil.com", "javascript:alert(1)"} {
		f.Add(seed)
	}
	g := &Gateway{cfg: Config{RedirectDomains: []string{"app.example.com"}}}
	g.public, _ = url.Parse("https://gate.example.com")
	f.Fuzz(func(t *testing.T, rd string) {
		got := g.safeRedirect(rd)
		if strings.ContainsAny(got, "\\\t\r\n\x00 ") {
			t.Fatalf("safeRedirect(%q) = %q: contains a separator browsers reinterpret", rd, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] >= 0x7f {
				t.Fatalf("safeRedirect(%q) = %q: contains non-ASCII", rd, got)
			}
		}
		target, err := g.public.Parse(got)
		if err != nil {
			t.Fatalf("safeRedirect(%q) = %q: does not parse: %v", rd, got, err)
		}
		if target.User != nil {
			t.Fatalf("safeRedirect(%q) = %q: carries userinfo", rd, got)
		}
		host := strings.ToLower(target.Hostname())
		if host != "gate.example.com" && host != "app.example.com" {
			t.Fatalf("safeRedirect(%q) = %q: leads to host %q", rd, got, target.Host)
		}
		if target.Scheme != "https" {
			t.Fatalf("safeRedirect(%q) = %q: scheme %q", rd, got, target.Scheme)
		}
	})
}

// FuzzStripOwnedHeaders checks that no spelling of an identity header survives stripping, and
// that headers headgate does not own are kept.
func FuzzStripOwnedHeaders(f *testing.F) {
	for _, seed := range []string{"X-Headscale-User", "x_headscale_user", "X-HEADSCALE-USER-ID", "Remote-User",
		"X-Forwarded-Email", "x-forwarded-preferred-username", "X-Auth-Request-Email", "Accept", "X-Forwarded-For"} {
		f.Add(seed)
	}
	identity := []string{"x-headscale-user", "x-headscale-user-id", "x-forwarded-user", "x-forwarded-email",
		"x-forwarded-preferred-username", "x-auth-request-user", "x-auth-request-email", "remote-user"}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"spoofed"}, "Accept": {"*/*"}}
		stripOwnedHeaders(h)
		normalized := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		for _, id := range identity {
			if normalized == id {
				if _, ok := h[name]; ok {
					t.Fatalf("identity header %q survived stripping", name)
				}
			}
		}
		if strings.EqualFold(name, "Accept") {
			return
		}
		if h.Get("Accept") != "*/*" {
			t.Fatalf("stripping %q removed Accept", name)
		}
		if !ownedHeader(name) {
			if _, ok := h[name]; !ok {
				t.Fatalf("header %q is not owned but was removed", name)
			}
		}
	})
}
