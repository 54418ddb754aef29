package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// Checks shared by the forward-auth recipe tests (nginx, Caddy): the same promises, whatever
// the proxy in front.

// closedAtEnd returns a function that fails t on err, or arranges for f to be closed when t
// ends, with its log shown and its directory kept when t failed, and returns f.
func closedAtEnd(t *testing.T) func(f *testbed.FrontProxy, err error) *testbed.FrontProxy {
	return func(f *testbed.FrontProxy, err error) *testbed.FrontProxy {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s kept in %s; last lines of %s:\n%s", f.Name, f.Dir, f.LogPath(), f.Log(25))
			}
			f.Close(t.Failed())
		})
		return f
	}
}

// checkUnlinkedThroughProxy checks that Carol, who has no Headscale user, gets headgate's 403
// page through the proxy at front, at sign-in and for a session refused after it (begun at an
// instance on the same store that lets unlinked people in), and never reaches the upstream.
func checkUnlinkedThroughProxy(t *testing.T, s *testbed.Stack, proxy, front, prefix, key string) {
	t.Helper()
	carol, err := testbed.BrowserLogin(t.Context(), newJar(t), front+prefix+"carol", testbed.Carol.Email, testbed.Carol.Password)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(what string, page *testbed.Page, path string) {
		t.Helper()
		checkReadablePage(t, what+" through "+proxy, page, http.StatusForbidden)
		if !strings.Contains(page.Body, "No Headscale user") {
			t.Errorf("%s through %s: got %q, want headgate's page", what, proxy, page.Body)
		}
		if n := len(upstreamSaw(prefix + path)); n != 0 {
			t.Errorf("%s reached the upstream %d times", what, n)
		}
	}
	refused("Carol", carol, "carol")
	allow := startGateway(t, s, testbed.GatewayOptions{Unlinked: "allow", RedisKeyPrefix: key})
	carolJar := newJar(t)
	login(t, allow, carolJar, testbed.Carol, prefix+"carol-allowed")
	carol, err = testbed.Fetch(t.Context(), carolJar, http.MethodGet, front+prefix+"carol-session", http.Header{"Accept": {testbed.BrowserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	refused("Carol's session", carol, "carol-session")
}

// checkProxyFailsClosed checks that the proxy, started by start on a port in front of a
// headgate address, answers an error within a bound and sends nothing on when its headgate is
// stopped or hangs. jar holds a session of the stack's store (key).
func checkProxyFailsClosed(t *testing.T, s *testbed.Stack, proxy string, jar http.CookieJar, prefix, key string,
	start func(port int, gatewayAddr string) (url string)) {
	t.Helper()
	g2 := startGateway(t, s, testbed.GatewayOptions{RedisKeyPrefix: key})
	ports, err := testbed.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	down := start(ports[0], strings.TrimPrefix(g2.URL, "http://"))
	if page, err := testbed.Fetch(t.Context(), jar, http.MethodGet, down+prefix+"before-stop", nil); err != nil || page.Status != http.StatusOK {
		t.Fatalf("through the second %s before its headgate stops: got %v, %v, want 200", proxy, page, err)
	}
	g2.Stop()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		var held []net.Conn // accepted and never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	hanging := start(ports[1], hung.Addr().String())
	for _, c := range []struct{ what, url, path string }{
		{"headgate stopped", down, prefix + "down"},
		{"headgate hanging", hanging, prefix + "hung"},
	} {
		began := time.Now()
		page, err := testbed.Fetch(t.Context(), jar, http.MethodGet, c.url+c.path, http.Header{"Accept": {testbed.BrowserAccept}})
		took := time.Since(began)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if page.Status == http.StatusOK || page.Status/100 == 3 {
			t.Errorf("%s: got %d, want an error", c.what, page.Status)
		}
		if took > 10*time.Second {
			t.Errorf("%s: answered after %s, want within 10s", c.what, took)
		}
		if n := len(upstreamSaw(c.path)); n != 0 {
			t.Errorf("%s: the upstream received %d requests, want none", c.what, n)
		}
		t.Logf("%s: %s answered %d after %s", c.what, proxy, page.Status, took.Round(time.Millisecond))
	}
}

// testForwardAuthRecipe runs a README forward-auth recipe: start runs the proxy on port in
// front of the headgate at gatewayAddr and the stack's upstream, and returns its URL; owned maps
// each header name the recipe deletes or copies (lower case) to what the upstream must receive
// under it for Bob ("": nothing). It proves that a browser signs in through the proxy and lands
// on the page it asked for; the upstream gets headgate's identity under every owned name and
// never a client's, in any spelling, nor headgate's cookies; a person without a Headscale user
// gets headgate's 403 page; sign-out through the proxy ends the session; and a headgate that is
// down or hangs closes the door.
func testForwardAuthRecipe(t *testing.T, proxy string, owned map[string]string, start func(port int, gatewayAddr string) (url string)) {
	t.Helper()
	s := sharedStack(t)
	port, err := s.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	// The instances of this test share a store of their own: one of them lets unlinked people in.
	key := fmt.Sprintf("headgate-%s-%d:", proxy, runs.Add(1))
	g := startGateway(t, s, testbed.GatewayOptions{RedisKeyPrefix: key, Extra: map[string]any{"public_url": "http://" + testbed.HostPort(port)}})
	front := start(port, strings.TrimPrefix(g.URL, "http://"))
	prefix := testPrefix(t)
	frontURL, _ := url.Parse(front)

	// (a) Sign-in through the proxy comes back to the page asked for, served by the upstream.
	jar := newJar(t)
	jar.SetCookies(frontURL, []*http.Cookie{{Name: "theme", Value: "dark"}})
	began := time.Now()
	page, err := testbed.BrowserLogin(t.Context(), jar, front+prefix+"home?x=1", testbed.Bob.Email, testbed.Bob.Password)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || page.URL.String() != front+prefix+"home?x=1" || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("sign-in through %s: got %d at %s, want 200 from the upstream at %s (%s)", proxy,
			page.Status, page.URL, front+prefix+"home?x=1", strings.Join(page.Hops, " -> "))
	}
	t.Logf("sign-in through %s took %s", proxy, time.Since(began).Round(time.Millisecond))
	var session *http.Cookie
	for _, ck := range jar.Cookies(frontURL) {
		if ck.Name == "_headgate" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no _headgate cookie after sign-in")
	}

	// (b), (c) Spoofed identity headers in several spellings, and a planted login cookie.
	spoof := http.Header{"Accept": {testbed.BrowserAccept}, "Cookie": {"a=1; _headgate_login_zz=planted; __Host-_headgate=planted"}}
	for name := range owned {
		canonical := http.CanonicalHeaderKey(name)
		spoof[canonical] = []string{"evil-1", "evil-2"}
		spoof[strings.ToUpper(name)] = []string{"evil-3"}
		spoof[strings.ReplaceAll(canonical, "-", "_")] = []string{"evil-4"}
		spoof[strings.ReplaceAll(name, "-", "_")] = []string{"evil-5"}
	}
	page, err = testbed.Fetch(t.Context(), jar, http.MethodGet, front+prefix+"spoof", spoof)
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
	want := owned
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
	only.SetCookies(frontURL, []*http.Cookie{session})
	page, err = testbed.Fetch(t.Context(), only, http.MethodGet, front+prefix+"only-session", http.Header{"Accept": {testbed.BrowserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	if saw := upstreamSaw(prefix + "only-session"); page.Status != http.StatusOK || len(saw) != 1 {
		t.Errorf("only the session cookie: got %d and %d upstream requests, want 200 and 1", page.Status, len(saw))
	} else if v, ok := saw[0].Header["Cookie"]; ok {
		t.Errorf("only the session cookie: the upstream got %d Cookie lines, want none", len(v))
	}

	// (d) A person without a Headscale user gets headgate's page, through the proxy.
	checkUnlinkedThroughProxy(t, s, proxy, front, prefix, key)

	// (f) With its headgate down, or hanging, the proxy answers an error and sends nothing on.
	checkProxyFailsClosed(t, s, proxy, jar, prefix, key, start)

	// (e) Sign-out through the proxy ends the session: the next request is sent to sign in, and
	// the old cookie no longer opens anything.
	page, err = testbed.Fetch(t.Context(), jar, http.MethodGet, front+"/oauth2/sign_out", http.Header{"Accept": {testbed.BrowserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Status/100 != 3 && page.Status != http.StatusOK {
		t.Errorf("sign-out: got %d, want a redirect or a page", page.Status)
	}
	for what, j := range map[string]http.CookieJar{"after sign-out": jar, "with the old cookie": newJar(t)} {
		if what == "with the old cookie" {
			j.SetCookies(frontURL, []*http.Cookie{session})
		}
		path := prefix + "after-" + strings.ReplaceAll(what, " ", "-")
		page, err := testbed.Fetch(t.Context(), j, http.MethodGet, front+path, http.Header{"Accept": {testbed.BrowserAccept}})
		if err != nil {
			t.Fatal(err)
		}
		// nginx makes the recipe's relative Location absolute; Caddy sends it as it is.
		loc, err := page.URL.Parse(page.Header.Get("Location"))
		if err != nil || page.Status != http.StatusFound || loc.Host != frontURL.Host || loc.Path != "/oauth2/start" || loc.Query().Get("rd") != path {
			t.Errorf("%s: got %d to %q, want 302 to %s/oauth2/start?rd=%s", what, page.Status, page.Header.Get("Location"), front, path)
		}
		if n := len(upstreamSaw(path)); n != 0 {
			t.Errorf("%s: the upstream received %d requests, want none", what, n)
		}
	}
}
