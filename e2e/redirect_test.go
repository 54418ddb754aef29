package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// openRedirectPayloads are return targets gathered from public open-redirect advisories and
// cheat sheets. None may take a browser off headgate's origin.
var openRedirectPayloads = []string{
	"//evil.example",
	"///evil.example",
	"////evil.example",
	"/\\evil.example",
	"\\/evil.example",
	"\\\\evil.example",
	"/%2f%2fevil.example",
	"/%2F%2Fevil.example",
	"%2f%2fevil.example",
	"/%5cevil.example",
	"/%09/evil.example",
	"/\t/evil.example",
	"/%0a/evil.example",
	"/%0d/evil.example",
	" //evil.example",
	"https:evil.example",
	"https:/evil.example",
	"https://evil.example",
	"http://evil.example",
	"HTTPS://evil.example",
	"//127.0.0.1@evil.example",
	"https://127.0.0.1@evil.example",
	"https://evil.example\\@127.0.0.1",
	"https://evil.example#@127.0.0.1",
	"javascript:alert(1)",
	"javascript://%0aalert(1)",
	"data:text/html,<script>alert(1)</script>",
	"/\u2215\u2215evil.example",
	"/\uff0f\uff0fevil.example",
	"/%ef%bc%8f%ef%bc%8fevil.example",
	"//evil%E3%80%82example",
	"/\x00/evil.example",
	"evil.example",
}

// redirectStaysHome fails t unless location is "/" or a path on the gateway's own origin.
func redirectStaysHome(t *testing.T, g *testbed.Gateway, what, payload, location string) {
	t.Helper()
	base, _ := url.Parse(g.URL + "/")
	target, err := base.Parse(location)
	if err != nil {
		t.Errorf("%s with rd=%q: Location %q does not parse: %v", what, payload, location, err)
		return
	}
	if target.Host != base.Host || target.Scheme != base.Scheme || target.User != nil || strings.HasPrefix(location, "//") {
		t.Errorf("%s with rd=%q: redirected to %q, off headgate's origin", what, payload, location)
	}
}

// TestOpenRedirectsRefused sends every payload as the return target of sign-out and of a real
// sign-in through Dex, against the headgate binary: each ends on headgate's own origin.
func TestOpenRedirectsRefused(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	for _, payload := range openRedirectPayloads {
		page := fetch(t, g, nil, http.MethodGet, "/oauth2/sign_out?rd="+url.QueryEscape(payload), nil)
		if page.Status != http.StatusFound {
			t.Errorf("sign-out with rd=%q: got %d, want 302", payload, page.Status)
			continue
		}
		redirectStaysHome(t, g, "sign-out", payload, page.Header.Get("Location"))
	}
	for _, payload := range openRedirectPayloads {
		jar := newJar(t)
		// Stop before the callback to read where headgate sends the browser after it.
		page, err := testbed.BrowserLoginUntil(t.Context(), jar, g.URL+"/oauth2/start?rd="+url.QueryEscape(payload),
			testbed.Bob.Email, testbed.Bob.Password, g.URL+"/oauth2/callback")
		if err != nil {
			t.Fatalf("sign-in with rd=%q: %v", payload, err)
		}
		callback, err := page.URL.Parse(page.Header.Get("Location"))
		if err != nil || !strings.HasPrefix(callback.String(), g.URL+"/oauth2/callback") {
			t.Fatalf("sign-in with rd=%q: did not reach the callback (%s)", payload, strings.Join(page.Hops, " -> "))
		}
		done, err := testbed.Fetch(t.Context(), jar, http.MethodGet, callback.String(), http.Header{"Accept": {testbed.BrowserAccept}})
		if err != nil {
			t.Fatalf("callback with rd=%q: %v", payload, err)
		}
		if done.Status != http.StatusFound {
			t.Errorf("callback with rd=%q: got %d, want 302", payload, done.Status)
			continue
		}
		redirectStaysHome(t, g, "sign-in", payload, done.Header.Get("Location"))
	}
}

// TestSafeRedirectKept checks the other side: a plain path survives sign-in.
func TestSafeRedirectKept(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	page := login(t, g, newJar(t), testbed.Bob, "/oauth2/start?rd="+url.QueryEscape(prefix+"page?x=1"))
	if page.Status != http.StatusOK || page.URL.RequestURI() != prefix+"page?x=1" {
		t.Errorf("sign-in with a safe rd: ended at %d %s, want 200 %s", page.Status, page.URL.RequestURI(), prefix+"page?x=1")
	}
}
