package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// spoofCases are identity headers a client might send, in every spelling that could reach an
// upstream that trusts them. The value "mallory" must never arrive anywhere.
var spoofCases = []struct {
	name   string
	header http.Header
}{
	{"canonical", http.Header{"X-Headscale-User": {"mallory"}}},
	{"lower case", http.Header{"x-headscale-user": {"mallory"}}},
	{"underscore", http.Header{"X_Headscale_User": {"mallory"}}},
	{"upper case", http.Header{"X-HEADSCALE-USER": {"mallory"}}},
	{"two values", http.Header{"X-Headscale-User": {"mallory", "mallory2"}}},
	{"two spellings", http.Header{"X-Headscale-User": {"mallory"}, "x-headscale-user": {"mallory2"}}},
	{"connection", http.Header{"Connection": {"X-Headscale-User"}, "X-Headscale-User": {"mallory"}}},
	{"user id", http.Header{"X-Headscale-User-Id": {"999"}, "x_headscale_user_id": {"mallory"}}},
	{"forwarded", http.Header{"X-Forwarded-User": {"mallory"}, "X-Forwarded-Email": {"mallory@example.com"},
		"X-Forwarded-Preferred-Username": {"mallory"}}},
	{"auth request", http.Header{"X-Auth-Request-User": {"mallory"}, "X-Auth-Request-Email": {"mallory@example.com"}}},
}

// checkNoSpoof fails when a header value sent by the client arrived.
func checkNoSpoof(t *testing.T, h http.Header) {
	t.Helper()
	for name, values := range h {
		for _, v := range values {
			if strings.Contains(v, "mallory") || v == "999" {
				t.Errorf("the client's value arrived: %s: %q", name, v)
			}
		}
	}
}

func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	jar := signedIn(t, g, testbed.Alice, prefix+"login")
	for _, c := range spoofCases {
		t.Run(c.name, func(t *testing.T) {
			path := prefix + url.PathEscape(c.name) + "/"
			header := c.header.Clone()
			header["Accept"] = []string{"application/json"}

			// A proxied path: the real identity, only.
			if page := fetch(t, g, jar, http.MethodGet, path, header); page.Status != http.StatusOK {
				t.Fatalf("proxied: got %d, want 200", page.Status)
			}
			got := upstreamSaw(path)
			if len(got) != 1 {
				t.Fatalf("proxied: the upstream received %d requests, want 1", len(got))
			}
			checkNoSpoof(t, got[0].Header)
			checkIdentity(t, got[0].Header, testbed.Alice, accounts.Alice)

			// A skip_auth path, with and without a session: no identity at all.
			for as, j := range map[string]http.CookieJar{"session": jar, "anonymous": nil} {
				skip := "/admin/healthz?t=" + url.QueryEscape(path) + "&as=" + as
				if page := fetch(t, g, j, http.MethodGet, skip, header); page.Status != http.StatusOK {
					t.Fatalf("skip_auth: got %d, want 200", page.Status)
				}
				got := upstreamSaw(skip)
				if len(got) != 1 {
					t.Fatalf("skip_auth: the upstream received %d requests, want 1", len(got))
				}
				if names := identityHeaderNames(got[0].Header); len(names) > 0 {
					t.Errorf("skip_auth: the upstream received identity headers %v, want none", names)
				}
				checkNoGatewayCookie(t, got[0].Header)
			}

			// Forward auth: the 202's headers are the real ones.
			page := fetch(t, g, jar, http.MethodGet, "/oauth2/auth", header)
			if page.Status != http.StatusAccepted {
				t.Fatalf("/oauth2/auth: got %d, want 202", page.Status)
			}
			checkNoSpoof(t, page.Header)
			checkIdentity(t, page.Header, testbed.Alice, accounts.Alice)
		})
	}
}

// sessionCookies returns the gateway's cookies in jar as a Cookie header value.
func sessionCookies(t *testing.T, g *testbed.Gateway, jar http.CookieJar) string {
	t.Helper()
	u, _ := url.Parse(g.URL)
	var parts []string
	for _, c := range jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "_headgate") {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	return strings.Join(parts, "; ")
}

func TestSignOutRevokes(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	jar := signedIn(t, g, testbed.Bob, prefix+"login")
	cookie := sessionCookies(t, g, jar)
	if cookie == "" {
		t.Fatal("the sign-in left no _headgate cookie")
	}
	api := http.Header{"Cookie": {cookie}, "Accept": {"application/json"}}
	if page := fetch(t, g, nil, http.MethodGet, prefix+"before", api); page.Status != http.StatusOK {
		t.Fatalf("replay before sign-out: got %d, want 200", page.Status)
	}

	page := fetch(t, g, jar, http.MethodGet, "/oauth2/sign_out?rd=/signed-out", nil)
	if loc, _ := url.Parse(page.Header.Get("Location")); page.Status != http.StatusFound || loc == nil || loc.Path != "/signed-out" {
		t.Errorf("sign-out: got %d to %q, want 302 to /signed-out", page.Status, page.Header.Get("Location"))
	}
	if left := sessionCookies(t, g, jar); left != "" {
		t.Errorf("the sign-out left the cookie in the browser")
	}

	if page := fetch(t, g, nil, http.MethodGet, prefix+"after-api", api); page.Status != http.StatusUnauthorized {
		t.Errorf("replayed cookie, API: got %d, want 401", page.Status)
	}
	browser := http.Header{"Cookie": {cookie}, "Accept": {testbed.BrowserAccept}}
	page = fetch(t, g, nil, http.MethodGet, prefix+"after-page", browser)
	if loc := page.Header.Get("Location"); page.Status != http.StatusFound || !strings.HasPrefix(loc, "/oauth2/start?") {
		t.Errorf("replayed cookie, browser: got %d to %q, want 302 to /oauth2/start", page.Status, loc)
	}
	if page := fetch(t, g, nil, http.MethodGet, "/oauth2/auth", api); page.Status != http.StatusUnauthorized {
		t.Errorf("replayed cookie, /oauth2/auth: got %d, want 401", page.Status)
	}
	if got := upstreamSaw(prefix + "after"); len(got) != 0 {
		t.Errorf("the upstream received %d requests after the sign-out, want none", len(got))
	}
}

func TestForwardAuth(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	jar := signedIn(t, g, testbed.Alice, testPrefix(t)+"login")
	api := http.Header{"Accept": {"application/json"}}

	page := fetch(t, g, jar, http.MethodGet, "/oauth2/auth", api)
	if page.Status != http.StatusAccepted {
		t.Fatalf("with a session: got %d, want 202", page.Status)
	}
	checkIdentity(t, page.Header, testbed.Alice, accounts.Alice)

	page = fetch(t, g, jar, http.MethodGet, "/oauth2/userinfo", api)
	var info struct {
		Email           string `json:"email"`
		HeadscaleUser   string `json:"headscaleUser"`
		HeadscaleUserID string `json:"headscaleUserId"`
	}
	if err := json.Unmarshal([]byte(page.Body), &info); err != nil || page.Status != http.StatusOK {
		t.Errorf("/oauth2/userinfo: got %d %q (%v), want 200 and JSON", page.Status, page.Body, err)
	}
	if info.Email != testbed.Alice.Email || info.HeadscaleUser != accounts.Alice.Name || info.HeadscaleUserID != accounts.Alice.ID {
		t.Errorf("/oauth2/userinfo: got %+v, want %s, %s, %s", info, testbed.Alice.Email, accounts.Alice.Name, accounts.Alice.ID)
	}

	for _, accept := range []string{"application/json", testbed.BrowserAccept} {
		page = fetch(t, g, nil, http.MethodGet, "/oauth2/auth", http.Header{"Accept": {accept}})
		if page.Status != http.StatusUnauthorized {
			t.Errorf("without a session (Accept %s): got %d, want 401", accept, page.Status)
		}
		if names := identityHeaderNames(page.Header); len(names) > 0 {
			t.Errorf("without a session: got identity headers %v, want none", names)
		}
	}
}

func TestSkipAuthWithoutSession(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	path := "/admin/healthz?t=" + url.QueryEscape(testPrefix(t))
	page := fetch(t, g, nil, http.MethodGet, path, http.Header{"Accept": {testbed.BrowserAccept}})
	if page.Status != http.StatusOK || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("got %d (X-Upstream %q), want the upstream's 200", page.Status, page.Header.Get("X-Upstream"))
	}
	got := upstreamSaw(path)
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests, want 1", len(got))
	}
	if names := identityHeaderNames(got[0].Header); len(names) > 0 {
		t.Errorf("the upstream received identity headers %v, want none", names)
	}
}

func TestUnauthenticatedBrowserRedirected(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	path := prefix + "page?x=1&y=2"
	page := fetch(t, g, nil, http.MethodGet, path, http.Header{"Accept": {testbed.BrowserAccept}})
	loc, err := url.Parse(page.Header.Get("Location"))
	if page.Status != http.StatusFound || err != nil || loc.Path != "/oauth2/start" {
		t.Fatalf("got %d to %q, want 302 to /oauth2/start", page.Status, page.Header.Get("Location"))
	}
	if rd := loc.Query().Get("rd"); rd != path {
		t.Errorf("rd: got %q, want %q", rd, path)
	}
	checkNoneReached(t, prefix)
}

func TestUnauthenticatedAPI401(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	cases := []struct {
		method string
		header http.Header
	}{
		{http.MethodGet, http.Header{"Accept": {"application/json"}}},
		{http.MethodGet, nil},
		{http.MethodPost, http.Header{"Accept": {testbed.BrowserAccept}}},
		{http.MethodGet, http.Header{"Accept": {testbed.BrowserAccept}, "Sec-Fetch-Mode": {"cors"}}},
		{http.MethodGet, http.Header{"Accept": {"application/json"}, "Cookie": {"_headgate=forged"}}},
	}
	for _, c := range cases {
		page := fetch(t, g, nil, c.method, prefix+"x", c.header)
		if page.Status != http.StatusUnauthorized {
			t.Errorf("%s with %v: got %d, want 401", c.method, c.header, page.Status)
		}
	}
	checkNoneReached(t, prefix)
}

// TestTwoInstancesShareSessions runs a second instance on the same Redis: a session started
// at one is honoured by the other, and a sign-out at either ends it at both.
func TestTwoInstancesShareSessions(t *testing.T) {
	t.Parallel()
	a := gateway(t)
	b := extraGateway(t, "second", testbed.GatewayOptions{})
	prefix := testPrefix(t)
	jar := newJar(t)
	if page := login(t, a, jar, testbed.Alice, prefix+"a"); page.Status != http.StatusOK {
		t.Fatalf("sign-in at the first: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	cookie := sessionCookies(t, a, jar)
	api := http.Header{"Cookie": {cookie}, "Accept": {"application/json"}}
	if page := fetch(t, b, nil, http.MethodGet, prefix+"b", api); page.Status != http.StatusOK {
		t.Fatalf("at the second: got %d, want 200", page.Status)
	}
	if got := upstreamSaw(prefix + "b"); len(got) == 1 {
		checkIdentity(t, got[0].Header, testbed.Alice, accounts.Alice)
	}

	if page := fetch(t, b, nil, http.MethodGet, "/oauth2/sign_out", api); page.Status >= 400 {
		t.Fatalf("sign-out at the second: got %d", page.Status)
	}
	// The first instance learns of the sign-out through Redis (how fast is
	// TestTwoInstancesSignOutWithinOneSecond's to check); a busy machine may take a while.
	eventually(t, "the first instance ends the session signed out at the second", 10*time.Second, 100*time.Millisecond,
		statusIs(t, a, prefix+"after", api, http.StatusUnauthorized))
}
