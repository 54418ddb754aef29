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

// readmeNginx returns the README's nginx block.
func readmeNginx(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```nginx\n")
	if !ok {
		t.Fatal("README.md has no nginx block")
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// startRecipeNginx runs the README's nginx block on 127.0.0.1:port in front of the headgate at
// gatewayAddr (host:port) and the stack's upstream. On failure the test shows nginx's error log
// and keeps its directory.
func startRecipeNginx(t *testing.T, s *Stack, port int, gatewayAddr string) *Nginx {
	t.Helper()
	server := nginxServer(readmeNginx(t), gatewayAddr, strings.TrimPrefix(s.Upstream.URL, "http://"))
	n, err := StartNginx(t.Context(), port, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx kept in %s; last lines of its error.log:\n%s", n.Dir, n.ErrorLog(25))
		}
		n.Close(t.Failed())
	})
	return n
}

// nginxOwned maps the header names the README's nginx block sets (lower case) to what the
// upstream must receive under them for Bob; "" means no header at all.
func nginxOwned() map[string]string {
	return map[string]string{
		"x-headscale-user":                  accounts.Bob.Name,
		"x-headscale-user-id":               accounts.Bob.ID,
		"x-forwarded-user":                  accounts.Bob.Name,
		"x-forwarded-email":                 Bob.Email,
		"x-forwarded-preferred-username":    Bob.Username,
		"x-auth-request-user":               accounts.Bob.Name,
		"x-auth-request-email":              Bob.Email,
		"x-auth-request-preferred-username": "",
		"x-auth-request-groups":             "",
		"x-auth-request-cookie":             "",
		"x-forwarded-groups":                "",
		"remote-user":                       accounts.Bob.Name,
		"remote-email":                      Bob.Email,
		"remote-name":                       "",
		"remote-groups":                     "",
	}
}

// TestNginxRecipe runs the README's nginx block in Debian's nginx in front of headgate: a
// browser signs in through nginx and lands on the page it asked for; the upstream gets
// headgate's identity under every name the recipe lists and never a client's, in any spelling,
// nor headgate's cookies; a person without a Headscale user gets headgate's 403 page; sign-out
// through nginx ends the session; and a headgate that is down or hangs closes the door.
func TestNginxRecipe(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	port, err := s.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	// The instances of this test share a store of their own: one of them lets unlinked people in.
	key := fmt.Sprintf("headgate-nginx-%d:", runs.Add(1))
	g := startGateway(t, s, GatewayOptions{RedisKeyPrefix: key, Extra: map[string]any{"public_url": "http://" + hostPort(port)}})
	n := startRecipeNginx(t, s, port, strings.TrimPrefix(g.URL, "http://"))
	prefix := testPrefix(t)
	nginxURL, _ := url.Parse(n.URL)

	// (a) Sign-in through nginx comes back to the page asked for, served by the upstream.
	jar := newJar(t)
	jar.SetCookies(nginxURL, []*http.Cookie{{Name: "theme", Value: "dark"}})
	began := time.Now()
	page, err := BrowserLogin(t.Context(), jar, n.URL+prefix+"home?x=1", Bob.Email, Bob.Password)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || page.URL.String() != n.URL+prefix+"home?x=1" || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("sign-in through nginx: got %d at %s, want 200 from the upstream at %s (%s)",
			page.Status, page.URL, n.URL+prefix+"home?x=1", strings.Join(page.Hops, " -> "))
	}
	t.Logf("sign-in through nginx took %s", time.Since(began).Round(time.Millisecond))
	var session *http.Cookie
	for _, c := range jar.Cookies(nginxURL) {
		if c.Name == "_headgate" {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no _headgate cookie after sign-in")
	}

	// (b), (c) Spoofed identity headers in several spellings, and a planted login cookie.
	spoof := http.Header{"Accept": {browserAccept}, "Cookie": {"a=1; _headgate_login_zz=planted; __Host-_headgate=planted"}}
	for name := range nginxOwned() {
		canonical := http.CanonicalHeaderKey(name)
		spoof[canonical] = []string{"evil-1", "evil-2"}
		spoof[strings.ToUpper(name)] = []string{"evil-3"}
		spoof[strings.ReplaceAll(canonical, "-", "_")] = []string{"evil-4"}
		spoof[strings.ReplaceAll(name, "-", "_")] = []string{"evil-5"}
	}
	page, err = Fetch(t.Context(), jar, http.MethodGet, n.URL+prefix+"spoof", spoof)
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
	want := nginxOwned()
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
	for _, name := range []string{"X-Headscale-User", "X-Headscale-User-Id"} {
		if got.Get(name) == "" {
			t.Errorf("%s: got none, want %q", name, want[strings.ToLower(name)])
		}
	}
	var names []string // cookie names only: a message must not show a session cookie
	for _, c := range (&http.Request{Header: got}).Cookies() {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"a", "theme"}) {
		t.Errorf("the upstream's cookies: got %q, want [a theme] (no headgate cookie)", names)
	}

	// (d) A person without a Headscale user gets headgate's page, through nginx.
	checkUnlinkedThroughProxy(t, s, "nginx", n.URL, prefix, key)

	// (f) With its headgate down, or hanging, nginx answers an error and sends nothing on.
	checkProxyFailsClosed(t, s, "nginx", jar, prefix, key, func(port int, gatewayAddr string) string {
		return startRecipeNginx(t, s, port, gatewayAddr).URL
	})

	// (e) Sign-out through nginx ends the session: the next request is sent to sign in, and
	// the old cookie no longer opens anything.
	page, err = Fetch(t.Context(), jar, http.MethodGet, n.URL+"/oauth2/sign_out", http.Header{"Accept": {browserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Status/100 != 3 && page.Status != http.StatusOK {
		t.Errorf("sign-out: got %d, want a redirect or a page", page.Status)
	}
	for what, j := range map[string]http.CookieJar{"after sign-out": jar, "with the old cookie": newJar(t)} {
		if what == "with the old cookie" {
			j.SetCookies(nginxURL, []*http.Cookie{session})
		}
		path := prefix + "after-" + strings.ReplaceAll(what, " ", "-")
		page, err := Fetch(t.Context(), j, http.MethodGet, n.URL+path, http.Header{"Accept": {browserAccept}})
		if err != nil {
			t.Fatal(err)
		}
		// nginx makes the recipe's relative redirect absolute (absolute_redirect is on).
		loc, err := page.URL.Parse(page.Header.Get("Location"))
		if err != nil || page.Status != http.StatusFound || loc.Host != nginxURL.Host || loc.Path != "/oauth2/start" || loc.Query().Get("rd") != path {
			t.Errorf("%s: got %d to %q, want 302 to %s/oauth2/start?rd=%s", what, page.Status, page.Header.Get("Location"), n.URL, path)
		}
		if n := len(upstreamSaw(path)); n != 0 {
			t.Errorf("%s: the upstream received %d requests, want none", what, n)
		}
	}
}
