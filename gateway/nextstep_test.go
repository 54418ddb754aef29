package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCallbackOfASignedInBrowser: a browser that is signed in and comes back to a callback
// whose login is spent (another tab finished first, or the address was opened again) is told
// it is signed in, not that its sign-in expired.
func TestCallbackOfASignedInBrowser(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	b := newBrowser(t)
	var callback string
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/oauth2/callback" && callback == "" {
			callback = req.URL.String()
		}
		return nil
	}
	if got := navigate(t, b, http.MethodGet, e.srv.URL+"/app"); got.status != http.StatusOK {
		t.Fatalf("sign-in: got %d %q", got.status, got.body)
	}
	for _, u := range []string{callback, e.srv.URL + "/oauth2/callback?code=x"} {
		navigate(t, b, http.MethodGet, u).check(t, "callback of a signed-in browser", http.StatusOK, "You are signed in", "Continue", "/")
	}
	navigate(t, newBrowser(t), http.MethodGet, callback).check(t, "the callback in another browser",
		http.StatusBadRequest, "Sign-in expired", "Sign in", "/oauth2/start")
}

// TestUnauthorizedPagesOfferSignIn: every 401 page a browser can see has a button that signs
// in and comes back.
func TestUnauthorizedPagesOfferSignIn(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.trusted = []string{"127.0.0.1"}
		o.redirects = []string{"app.example.com"}
	})
	page := func(method, path string, h http.Header) shown {
		req, err := http.NewRequest(method, e.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "text/html")
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return readShown(t, resp)
	}
	tests := []struct {
		name, method, path string
		header             http.Header
		href               string
	}{
		{"userinfo", "GET", "/oauth2/userinfo", nil, "/oauth2/start?rd=" + url.QueryEscape("/oauth2/userinfo")},
		{"a fetch", "GET", "/app/data?x=1", http.Header{"Sec-Fetch-Mode": {"cors"}}, "/oauth2/start?rd=" + url.QueryEscape("/app/data?x=1")},
		{"a form post", "POST", "/app/save", nil, "/oauth2/start?rd=%2F"},
		{"forward auth", "GET", "/oauth2/auth", http.Header{"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host": {"app.example.com"}, "X-Forwarded-Uri": {"/x?y=1"}},
			e.srv.URL + "/oauth2/start?rd=" + url.QueryEscape("https://app.example.com/x?y=1")},
		{"forward auth naming no request", "GET", "/oauth2/auth", nil, e.srv.URL + "/oauth2/start?rd=%2F"},
	}
	for _, tt := range tests {
		page(tt.method, tt.path, tt.header).check(t, tt.name, http.StatusUnauthorized, "Sign-in required", "Sign in", tt.href)
	}
}

// TestSignInStartWhileIdPHangs: with a provider that takes connections but never answers,
// /oauth2/start answers within oidc.start_timeout, long before oidc.timeout, with a page whose
// button tries again; once the provider answers, the discovery that went on in the background
// lets the next sign-in through. The same holds for a provider that hangs after discovery.
func TestSignInStartWhileIdPHangs(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.edit = func(c *Config) { c.OIDC.Timeout, c.OIDC.StartTimeout = 5*time.Second, 200*time.Millisecond }
	})
	withAlice(e)
	start := func(what string) *http.Response {
		t.Helper()
		began := time.Now()
		resp := e.get(t, "/oauth2/start?rd=/x", http.Header{"Accept": {"text/html"}})
		if took := time.Since(began); took > 2*time.Second {
			t.Errorf("%s: answered after %s, want about oidc.start_timeout (200ms), well within oidc.timeout (5s)", what, took)
		}
		return resp
	}
	e.idp.Hang(t, true)
	for _, what := range []string{"before discovery", "while discovery goes on"} {
		readShown(t, start(what)).check(t, what, http.StatusServiceUnavailable,
			"Identity provider unreachable", "Try again", "/oauth2/start?rd=%2Fx")
	}
	e.idp.Hang(t, false)
	deadline := time.Now().Add(5 * time.Second)
	for resp := start("after the provider answers"); resp.StatusCode != http.StatusFound; resp = start("after the provider answers") {
		if time.Now().After(deadline) {
			t.Fatalf("the provider answers again, but sign-ins still get %d", resp.StatusCode)
		}
		e.clock.Advance(e.gw.timing.Rediscover)
		time.Sleep(20 * time.Millisecond)
	}

	e.idp.Hang(t, true)
	e.clock.Advance(e.gw.timing.Probe) // the last check that the provider answers is stale
	readShown(t, start("after discovery")).check(t, "after discovery", http.StatusServiceUnavailable,
		"Identity provider unreachable", "Try again", "/oauth2/start?rd=%2Fx")
}

// TestFailurePagesOfferNextStep: the pages of a sign-in or a request that failed for want of a
// peer offer to try again (the sign-in with its target, the request itself), and carry the
// request ID of their log line.
func TestFailurePagesOfferNextStep(t *testing.T) {
	t.Run("provider down at the code exchange", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.memory = true })
		withAlice(e)
		b := newBrowser(t)
		b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/oauth2/callback" {
				e.idp.Down(true)
			}
			return nil
		}
		got := navigate(t, b, http.MethodGet, e.srv.URL+"/app?x=1")
		got.check(t, "sign-in", http.StatusServiceUnavailable, "Identity provider unreachable", "Try again",
			"/oauth2/start?rd="+url.QueryEscape("/app?x=1"))
		checkLoggedID(t, e, got)
	})
	t.Run("headscale down at sign-in", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.memory = true })
		withAlice(e)
		e.headscale.set(func(h *headscaleDouble) { h.down = true })
		got := navigate(t, newBrowser(t), http.MethodGet, e.srv.URL+"/app")
		got.check(t, "sign-in", http.StatusServiceUnavailable, "Headscale unreachable", "Try again", "/oauth2/start?rd=%2Fapp")
		checkLoggedID(t, e, got)
	})
	t.Run("token that does not verify", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.memory = true })
		withAlice(e)
		e.idp.Mutate(func(c map[string]any) { c["aud"] = "someone-else" })
		navigate(t, newBrowser(t), http.MethodGet, e.srv.URL+"/app").check(t, "sign-in", http.StatusUnauthorized,
			"Sign-in could not be verified", "Try again", "/oauth2/start?rd=%2Fapp")
	})
	t.Run("upstream unreachable", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.memory = true })
		withAlice(e)
		b, _ := e.signedIn(t)
		e.upstream.srv.Close()
		got := navigate(t, b, http.MethodGet, e.srv.URL+"/app/x?y=1")
		got.check(t, "request", http.StatusBadGateway, "The application is unreachable", "Try again", "/app/x?y=1")
		checkLoggedID(t, e, got)
	})
	t.Run("unknown headgate page", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.headplane = "/admin" })
		navigate(t, newBrowser(t), http.MethodGet, e.srv.URL+"/oauth2/nope").check(t, "page", http.StatusNotFound,
			"Not found", "Go to the application", "/admin/")
	})
}

// checkLoggedID checks that the page shows a request ID and the log line of its failure
// carries it.
func checkLoggedID(t *testing.T, e *testEnv, got shown) {
	t.Helper()
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if got.requestID != "" && strings.Contains(line, "request failed") && strings.Contains(line, "request_id="+got.requestID) {
			return
		}
	}
	t.Errorf("no failure in the log carries the page's request ID %q:\n%s", got.requestID, e.logs.String())
}
