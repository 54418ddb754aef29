package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeCaddy returns the README's caddyfile block.
func readmeCaddy(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```caddyfile\n")
	if !ok {
		t.Fatal("README.md has no caddyfile block")
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// startRecipeCaddy runs the README's caddyfile block on 127.0.0.1:port in front of the headgate
// at gatewayAddr (host:port) and the stack's upstream. On failure the test shows Caddy's log
// and keeps its directory.
func startRecipeCaddy(t *testing.T, s *Stack, port int, gatewayAddr string) *Caddy {
	t.Helper()
	site := caddySite(readmeCaddy(t), hostPort(port), gatewayAddr, strings.TrimPrefix(s.Upstream.URL, "http://"))
	c, err := StartCaddy(t.Context(), s.bin.caddy, port, site)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy kept in %s; last lines of its log:\n%s", c.Dir, c.Log(25))
		}
		c.Close(t.Failed())
	})
	return c
}

// caddyOwned maps the header names the README's caddyfile block deletes or copies (lower case)
// to what the upstream must receive under them for Bob; "" means no header at all. Names the
// block deletes by family and headgate never sets stand for their families.
func caddyOwned() map[string]string {
	return map[string]string{
		"x-headscale-user":                  accounts.Bob.Name,
		"x-headscale-user-id":               accounts.Bob.ID,
		"x-headscale-role":                  "",
		"x-forwarded-user":                  accounts.Bob.Name,
		"x-forwarded-email":                 Bob.Email,
		"x-forwarded-preferred-username":    Bob.Username,
		"x-forwarded-groups":                "",
		"x-forwarded-access-token":          "",
		"x-auth-request-user":               accounts.Bob.Name,
		"x-auth-request-email":              Bob.Email,
		"x-auth-request-preferred-username": "",
		"x-auth-request-groups":             "",
		"x-auth-request-cookie":             "",
		"x-auth-request-access-token":       "",
		"remote-user":                       "",
		"remote-email":                      "",
		"remote-name":                       "",
		"remote-groups":                     "",
	}
}

// TestCaddyRecipe runs the README's caddyfile block in the suite's Caddy (built from the tools
// module) in front of headgate: a browser signs in through Caddy and lands on the page it
// asked for; the upstream gets headgate's identity under every name the recipe copies and never
// a client's, in any spelling, nor headgate's cookies; a person without a Headscale user gets
// headgate's 403 page; sign-out through Caddy ends the session; and a headgate that is down or
// hangs closes the door.
func TestCaddyRecipe(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	port, err := s.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	// The instances of this test share a store of their own: one of them lets unlinked people in.
	key := fmt.Sprintf("headgate-caddy-%d:", runs.Add(1))
	g := startGateway(t, s, GatewayOptions{RedisKeyPrefix: key, Extra: map[string]any{"public_url": "http://" + hostPort(port)}})
	c := startRecipeCaddy(t, s, port, strings.TrimPrefix(g.URL, "http://"))
	prefix := testPrefix(t)
	caddyURL, _ := url.Parse(c.URL)

	// (a) Sign-in through Caddy comes back to the page asked for, served by the upstream.
	jar := newJar(t)
	jar.SetCookies(caddyURL, []*http.Cookie{{Name: "theme", Value: "dark"}})
	began := time.Now()
	page, err := BrowserLogin(t.Context(), jar, c.URL+prefix+"home?x=1", Bob.Email, Bob.Password)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || page.URL.String() != c.URL+prefix+"home?x=1" || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("sign-in through caddy: got %d at %s, want 200 from the upstream at %s (%s)",
			page.Status, page.URL, c.URL+prefix+"home?x=1", strings.Join(page.Hops, " -> "))
	}
	t.Logf("sign-in through caddy took %s", time.Since(began).Round(time.Millisecond))
	var session *http.Cookie
	for _, ck := range jar.Cookies(caddyURL) {
		if ck.Name == "_headgate" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no _headgate cookie after sign-in")
	}

	// (b), (c) Spoofed identity headers in several spellings, and a planted login cookie.
	spoof := http.Header{"Accept": {browserAccept}, "Cookie": {"a=1; _headgate_login_zz=planted; __Host-_headgate=planted"}}
	for name := range caddyOwned() {
		canonical := http.CanonicalHeaderKey(name)
		spoof[canonical] = []string{"evil-1", "evil-2"}
		spoof[strings.ToUpper(name)] = []string{"evil-3"}
		spoof[strings.ReplaceAll(canonical, "-", "_")] = []string{"evil-4"}
		spoof[strings.ReplaceAll(name, "-", "_")] = []string{"evil-5"}
	}
	page, err = Fetch(t.Context(), jar, http.MethodGet, c.URL+prefix+"spoof", spoof)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK {
		t.Fatalf("signed-in request with spoofed headers: got %d, want 200", page.Status)
	}
	saw := upstreamSaw(prefix + "spoof")
	if len(saw) != 1 {
		t.Fatalf("the upstream received %d requests, want 1", len(saw))
	}
	got := saw[0].Header
	want := caddyOwned()
	for name, values := range got {
		key := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		for _, v := range values {
			if strings.Contains(v, "evil") {
				t.Errorf("the upstream received the client's %s: %q", name, v)
			}
		}
		w, owned := want[key]
		if !owned {
			continue
		}
		if w == "" {
			t.Errorf("%s: got %q, want no header", name, values)
		} else if !slices.Equal(values, []string{w}) {
			t.Errorf("%s: got %q, want [%q]", name, values, w)
		}
	}
	for name, w := range want {
		if w != "" && got.Get(name) == "" {
			t.Errorf("%s: got none, want %q", name, w)
		}
	}
	var names []string // cookie names only: a message must not show a session cookie
	for _, ck := range (&http.Request{Header: got}).Cookies() {
		names = append(names, ck.Name)
	}
	if !slices.Equal(names, []string{"a", "theme"}) {
		t.Errorf("the upstream's cookies: got %q, want [a theme] (no headgate cookie)", names)
	}
	// A client with only headgate's cookie sends the upstream no Cookie at all.
	only := newJar(t)
	only.SetCookies(caddyURL, []*http.Cookie{session})
	page, err = Fetch(t.Context(), only, http.MethodGet, c.URL+prefix+"only-session", http.Header{"Accept": {browserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	if saw := upstreamSaw(prefix + "only-session"); page.Status != http.StatusOK || len(saw) != 1 {
		t.Errorf("only the session cookie: got %d and %d upstream requests, want 200 and 1", page.Status, len(saw))
	} else if v, ok := saw[0].Header["Cookie"]; ok {
		t.Errorf("only the session cookie: the upstream got %d Cookie lines, want none", len(v))
	}

	// (d) A person without a Headscale user gets headgate's page, through caddy.
	checkUnlinkedThroughProxy(t, s, "caddy", c.URL, prefix, key)

	// (f) With its headgate down, or hanging, caddy answers an error and sends nothing on.
	checkProxyFailsClosed(t, s, "caddy", jar, prefix, key, func(port int, gatewayAddr string) string {
		return startRecipeCaddy(t, s, port, gatewayAddr).URL
	})

	// (e) Sign-out through Caddy ends the session: the next request is sent to sign in, and
	// the old cookie no longer opens anything.
	page, err = Fetch(t.Context(), jar, http.MethodGet, c.URL+"/oauth2/sign_out", http.Header{"Accept": {browserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Status/100 != 3 && page.Status != http.StatusOK {
		t.Errorf("sign-out: got %d, want a redirect or a page", page.Status)
	}
	for what, j := range map[string]http.CookieJar{"after sign-out": jar, "with the old cookie": newJar(t)} {
		if what == "with the old cookie" {
			j.SetCookies(caddyURL, []*http.Cookie{session})
		}
		path := prefix + "after-" + strings.ReplaceAll(what, " ", "-")
		page, err := Fetch(t.Context(), j, http.MethodGet, c.URL+path, http.Header{"Accept": {browserAccept}})
		if err != nil {
			t.Fatal(err)
		}
		// Caddy's redir sends the recipe's relative Location as it is.
		loc, err := page.URL.Parse(page.Header.Get("Location"))
		if err != nil || page.Status != http.StatusFound || loc.Host != caddyURL.Host || loc.Path != "/oauth2/start" || loc.Query().Get("rd") != path {
			t.Errorf("%s: got %d to %q, want 302 to %s/oauth2/start?rd=%s", what, page.Status, page.Header.Get("Location"), c.URL, path)
		}
		if n := len(upstreamSaw(path)); n != 0 {
			t.Errorf("%s: the upstream received %d requests, want none", what, n)
		}
	}
}
