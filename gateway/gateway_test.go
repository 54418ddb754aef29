package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// withAlice adds the IdP's default user to Headscale as an OIDC user.
func withAlice(e *testEnv) {
	e.headscale.addUser("1", "alice", "alice@example.com", e.idp.URL+"/alice-sub")
}

func TestSignInLinksByProviderIDAndProxies(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	b, resp := e.signIn(t, "/admin/machines?tab=1")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200; body %q", resp.StatusCode, body)
	}
	if got, want := resp.Request.URL.RequestURI(), "/admin/machines?tab=1"; got != want {
		t.Errorf("returned to %q, want %q", got, want)
	}
	up := e.upstream.last()
	if up == nil {
		t.Fatal("upstream received nothing")
	}
	for name, want := range map[string]string{
		"X-Headscale-User":               "alice",
		"X-Headscale-User-Id":            "1",
		"X-Forwarded-Email":              "alice@example.com",
		"X-Forwarded-User":               "alice",
		"X-Forwarded-Preferred-Username": "alice",
	} {
		if got := up.Header.Get(name); got != want {
			t.Errorf("upstream %s: got %q, want %q", name, got, want)
		}
	}
	if got, want := up.Host, mustURL(t, e.srv.URL).Host; got != want {
		t.Errorf("upstream Host: got %q, want the browser's %q", got, want)
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, "_headgate") {
		t.Errorf("upstream received headgate's cookie: %q", c)
	}
	c := e.sessionCookie(t, b)
	if len(c.Value) > 1024 {
		t.Errorf("session cookie is %d bytes, want under 1 KB", len(c.Value))
	}
}

func TestUnauthenticatedRequests(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"browser navigation", http.Header{"Accept": {"text/html,application/xhtml+xml"}}, http.StatusFound},
		{"fetch metadata navigate", http.Header{"Sec-Fetch-Mode": {"navigate"}}, http.StatusFound},
		{"fetch from a page", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}}, http.StatusUnauthorized},
		{"xhr", http.Header{"Accept": {"text/html"}, "X-Requested-With": {"XMLHttpRequest"}}, http.StatusUnauthorized},
		{"api client", http.Header{"Accept": {"application/json"}}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.get(t, "/admin/users?x=1", tt.header)
			if resp.StatusCode != tt.want {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusFound {
				if got, want := resp.Header.Get("Location"), "/oauth2/start?rd="+url.QueryEscape("/admin/users?x=1"); got != want {
					t.Errorf("Location: got %q, want %q", got, want)
				}
			}
		})
	}
	if n := e.upstream.count(); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

func TestUnlinkedDenied(t *testing.T) {
	e := newTestEnv(t)
	e.idp.SetUser(map[string]any{"sub": "carol-sub", "email": "carol@example.com", "email_verified": true})
	_, resp := e.signIn(t, "/admin")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status: got %d, want 403", resp.StatusCode)
	}
	if !strings.Contains(body, "carol@example.com") {
		t.Errorf("403 page does not name the signed-in email: %q", body)
	}
	if n := e.upstream.count(); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

func TestUnlinkedAllowedProxiesWithoutHeadscaleHeaders(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.unlinked = "allow" })
	e.idp.SetUser(map[string]any{"sub": "carol-sub", "email": "carol@example.com", "email_verified": true})
	_, resp := e.signIn(t, "/app")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	up := e.upstream.last()
	if v, ok := up.Header["X-Headscale-User"]; ok {
		t.Errorf("upstream got X-Headscale-User %q for an unlinked user", v)
	}
	if got, want := up.Header.Get("X-Forwarded-Email"), "carol@example.com"; got != want {
		t.Errorf("X-Forwarded-Email: got %q, want %q", got, want)
	}
}

func TestLinkByVerifiedEmail(t *testing.T) {
	tests := []struct {
		name     string
		match    []string
		verified bool
		want     int
	}{
		{"email enabled and verified", []string{"provider_id", "email"}, true, http.StatusOK},
		{"email enabled, unverified", []string{"provider_id", "email"}, false, http.StatusForbidden},
		{"email disabled", []string{"provider_id"}, true, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.match = tt.match })
			e.headscale.addUser("7", "bob", "Bob@Example.com", "")
			e.idp.SetUser(map[string]any{"sub": "bob-sub", "email": "bob@example.com", "email_verified": tt.verified})
			_, resp := e.signIn(t, "/")
			if resp.StatusCode != tt.want {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusOK {
				if got := e.upstream.last().Header.Get("X-Headscale-User"); got != "bob" {
					t.Errorf("X-Headscale-User: got %q, want bob", got)
				}
			}
		})
	}
}

func TestForwardAuth(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	_, c := e.signedIn(t)
	resp := e.get(t, "/oauth2/auth", http.Header{
		"Cookie":           {c.Name + "=" + c.Value},
		"X-Headscale-User": {"root"},
	})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202", resp.StatusCode)
	}
	if got := resp.Header.Values("X-Headscale-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("X-Headscale-User: got %q, want [alice]", got)
	}
	if got := resp.Header.Get("X-Auth-Request-Email"); got != "alice@example.com" {
		t.Errorf("X-Auth-Request-Email: got %q", got)
	}
	if resp := e.get(t, "/oauth2/auth", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a session: got %d, want 401", resp.StatusCode)
	}
	resp = e.get(t, "/oauth2/userinfo", http.Header{"Cookie": {c.Name + "=" + c.Value}})
	if body := readBody(t, resp); !strings.Contains(body, `"headscaleUser":"alice"`) {
		t.Errorf("userinfo: got %q", body)
	}
}

// TestForwardAuthCookie: the forward-auth answer hands the proxy the request's cookies without
// headgate's own, in order and unchanged, for the upstream's Cookie header.
func TestForwardAuthCookie(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	_, c := e.signedIn(t)
	own := c.Name + "=" + c.Value
	tests := []struct {
		cookie []string
		want   string // "": no X-Auth-Request-Cookie
	}{
		{[]string{own}, ""},
		{[]string{"theme=dark; " + own + "; lang=en"}, "theme=dark; lang=en"},
		{[]string{own + "; _headgate_login_abc=x; __Host-_headgate=y; b=\"q r\"; a=1"}, `b="q r"; a=1`},
		{[]string{"z=9", own, "_headgatex=1"}, "z=9; _headgatex=1"},
		{[]string{"a=1;b=2; " + own}, "a=1; b=2"},
	}
	for _, tt := range tests {
		resp := e.get(t, "/oauth2/auth", http.Header{"Cookie": tt.cookie, "X-Auth-Request-Cookie": {"spoofed=1"}})
		readBody(t, resp)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("Cookie %q: status: got %d, want 202", tt.cookie, resp.StatusCode)
		}
		// The same value under the name Traefik copies.
		for _, name := range []string{"X-Auth-Request-Cookie", "Cookie"} {
			got := resp.Header.Values(name)
			if tt.want == "" {
				if len(got) != 0 {
					t.Errorf("Cookie %q: %s: got %q, want none", tt.cookie, name, got)
				}
				continue
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("Cookie %q: %s: got %q, want [%q]", tt.cookie, name, got, tt.want)
			}
		}
	}
	resp := e.get(t, "/oauth2/auth", http.Header{"Cookie": {"theme=dark"}})
	readBody(t, resp)
	if got := resp.Header.Values("X-Auth-Request-Cookie"); resp.StatusCode != http.StatusUnauthorized || len(got) != 0 {
		t.Errorf("without a session: got %d with X-Auth-Request-Cookie %q, want 401 and none", resp.StatusCode, got)
	}
}

func TestPingAndReady(t *testing.T) {
	e := newTestEnv(t)
	for _, path := range []string{"/ping", "/ready"} {
		if resp := e.get(t, path, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: got %d, want 200", path, resp.StatusCode)
		}
	}
	if n := e.upstream.count(); n != 0 {
		t.Errorf("probes reached the upstream %d times", n)
	}
}

func TestUnknownOAuth2PathNotProxied(t *testing.T) {
	e := newTestEnv(t)
	if resp := e.get(t, "/oauth2/whatever", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("got %d, want 404", resp.StatusCode)
	}
	if n := e.upstream.count(); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

func TestSessionCookieFailures(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	_, c := e.signedIn(t)
	good := c.Value
	tests := map[string]string{
		"tampered":  good[:len(good)/2] + flip(good[len(good)/2]) + good[len(good)/2+1:],
		"truncated": good[:len(good)-10],
		"garbage":   "not-a-cookie",
		"oversized": strings.Repeat("A", 8000),
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			resp := e.get(t, "/api", http.Header{"Cookie": {"_headgate=" + value}})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("got %d, want 401", resp.StatusCode)
			}
			if !strings.Contains(resp.Header.Get("Set-Cookie"), "_headgate=;") {
				t.Errorf("bad cookie not cleared: Set-Cookie %q", resp.Header.Get("Set-Cookie"))
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestUpstreamFailures(t *testing.T) {
	// /slow answers only once the gateway has given up on it.
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
		}
		w.Write([]byte("ok"))
	})
	e := newTestEnv(t, func(o *envOptions) { o.upstream = slow; o.upTimeout = 100 * time.Millisecond })
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "Accept": {"text/html"}}
	start := time.Now()
	resp := e.get(t, "/slow", h)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("slow upstream: got %d, want 504", resp.StatusCode)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("slow upstream answered after %v, want about the 100ms timeout", d)
	}
	if body := readBody(t, resp); !strings.Contains(body, "<h1>") {
		t.Errorf("504 is not a readable page: %q", body)
	}
	e.upstream.srv.Close()
	if resp := e.get(t, "/", h); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("upstream down: got %d, want 502", resp.StatusCode)
	}
}

// TestOneDenyDecision: a person the proxy refuses is refused alike by forward auth and by
// /oauth2/userinfo, which would otherwise tell an app who they are: here a person whose
// Headscale user was deleted after they signed in (unlinked: deny), then one whose user's name
// another user has too.
func TestOneDenyDecision(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.ttl = time.Nanosecond })
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	if resp := e.get(t, "/oauth2/userinfo", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo while linked: got %d, want 200", resp.StatusCode)
	}
	sent := e.upstream.count()
	refused := func(why string) {
		t.Helper()
		for _, path := range []string{"/admin", "/oauth2/auth", "/oauth2/userinfo"} {
			resp := e.get(t, path, h)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s, %s: got %d, want 403", why, path, resp.StatusCode)
			}
			if strings.Contains(body, "alice-sub") || resp.Header.Get("X-Headscale-User") != "" {
				t.Errorf("%s, %s: the answer tells who the person is: %q %q", why, path, resp.Header, body)
			}
		}
		if n := e.upstream.count(); n != sent {
			t.Errorf("%s: the upstream received %d requests, want none", why, n-sent)
		}
	}

	var users []map[string]string
	e.headscale.set(func(h *headscaleDouble) { users, h.users = h.users, nil })
	refused("user deleted")

	e.headscale.set(func(h *headscaleDouble) { h.users = users })
	e.headscale.addUser("5", "alice", "other@example.com", "")
	refused("name shared")
}

// TestCutOffBodyLogged: a response body the upstream cuts off is reported in headgate's own
// log, not the standard logger's.
func TestCutOffBodyLogged(t *testing.T) {
	cut := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			return
		}
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	e := newTestEnv(t, func(o *envOptions) { o.upstream = cut })
	withAlice(e)
	_, c := e.signedIn(t)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/big", nil)
	req.Header.Set("Cookie", c.Name+"="+c.Value)
	if resp, err := noRedirect.Do(req); err == nil {
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("a body cut off upstream arrived whole")
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), "level=WARN msg=\"httputil: ReverseProxy read error during body copy") {
		if time.Now().After(deadline) {
			t.Fatalf("the cut-off body is not in headgate's log:\n%s", e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
