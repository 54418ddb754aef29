package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// ownStack starts a stack for one test that stops or slows its peers, so that the shared stack
// keeps serving the other tests. It is closed when the test ends and kept on disk when the
// test failed.
func ownStack(t *testing.T, opts testbed.Options) *testbed.Stack {
	t.Helper()
	sharedStack(t) // the same binary: when the shared instance failed, say why
	s, err := testbed.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start a stack of its own: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.Keep = true
			t.Logf("the stack's configurations and logs are kept in %s", s.Dir)
		}
		s.Close()
	})
	if s.Gateway != nil {
		showLogOnFailure(t, s.Gateway)
	}
	return s
}

// sharedStack returns the suite's stack, failing the test when its headgate instance did not
// start (the binary is the same for every instance).
func sharedStack(t *testing.T) *testbed.Stack {
	t.Helper()
	if sharedErr != nil {
		t.Fatalf("headgate did not start: %v", sharedErr)
	}
	return stack
}

// startGateway adds an instance to s for this test and shows its log when the test fails.
func startGateway(t *testing.T, s *testbed.Stack, opts testbed.GatewayOptions) *testbed.Gateway {
	t.Helper()
	g, err := s.StartGateway(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	showLogOnFailure(t, g)
	return g
}

// checkReadablePage checks that page is headgate's own page for a browser: status want, HTML
// with a heading.
func checkReadablePage(t *testing.T, what string, page *testbed.Page, want int) {
	t.Helper()
	if page.Status != want {
		t.Errorf("%s: got %d, want %d (%s)", what, page.Status, want, strings.Join(page.Hops, " -> "))
		return
	}
	if ct := page.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type: got %q, want text/html", what, ct)
	}
	if !strings.Contains(page.Body, "<h1>") {
		t.Errorf("%s: got a body without a heading, want a readable page: %q", what, page.Body)
	}
}

// eventually polls check every interval until it reports done, and fails the test when timeout
// passes first with the last state check described. It returns how long it took.
func eventually(t *testing.T, what string, timeout, interval time.Duration, check func() (done bool, state string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		done, state := check()
		if done {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, state)
		}
		time.Sleep(interval)
	}
}

// statusIs returns a check for eventually: the status of path at g with header is want.
func statusIs(t *testing.T, g *testbed.Gateway, path string, header http.Header, want int) func() (bool, string) {
	return func() (bool, string) {
		page, err := g.Fetch(t.Context(), nil, http.MethodGet, path, header)
		if err != nil {
			return false, err.Error()
		}
		return page.Status == want, http.StatusText(page.Status)
	}
}

// waitReady waits until g's /ready answers 200: its session store answers again.
func waitReady(t *testing.T, g *testbed.Gateway, timeout time.Duration) {
	t.Helper()
	eventually(t, "/ready answers 200", timeout, 50*time.Millisecond, statusIs(t, g, "/ready", nil, http.StatusOK))
}

// wantAPIStatus checks that an API client presenting cookie gets status want for path at g;
// what names the case in the failure.
func wantAPIStatus(t *testing.T, g *testbed.Gateway, path, cookie string, want int, what string) {
	t.Helper()
	if page := fetch(t, g, nil, http.MethodGet, path, api(cookie)); page.Status != want {
		t.Errorf("%s: got %d, want %d", what, page.Status, want)
	}
}

// api is the header of a script or API client presenting cookie.
func api(cookie string) http.Header {
	return http.Header{"Cookie": {cookie}, "Accept": {"application/json"}}
}

// signedIn signs u in at g through a fresh browser, checks that it reaches the upstream at path,
// and returns the browser's cookie jar.
func signedIn(t *testing.T, g *testbed.Gateway, u testbed.User, path string) http.CookieJar {
	t.Helper()
	jar := newJar(t)
	if page := login(t, g, jar, u, path); page.Status != http.StatusOK {
		t.Fatalf("sign-in of %s: got %d, want 200 (%s)", u.Email, page.Status, strings.Join(page.Hops, " -> "))
	}
	return jar
}

// loginCookie signs u in at g through a fresh browser, checks that it reaches the upstream, and
// returns the session cookie as a Cookie header value.
func loginCookie(t *testing.T, g *testbed.Gateway, u testbed.User, path string) string {
	t.Helper()
	cookie := sessionCookies(t, g, signedIn(t, g, u, path))
	if cookie == "" {
		t.Fatalf("the sign-in of %s left no session cookie", u.Email)
	}
	return cookie
}

// signOut signs the session of cookie out at g.
func signOut(t *testing.T, g *testbed.Gateway, cookie string) {
	t.Helper()
	if page := fetch(t, g, nil, http.MethodGet, "/oauth2/sign_out", api(cookie)); page.Status != http.StatusOK {
		t.Fatalf("sign-out at %s: got %d, want 200", g.URL, page.Status)
	}
}

// withTimeout is t.Context() bounded by d.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
