package gateway

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// shown is what a person sees of one of headgate's pages.
type shown struct {
	status              int
	path                string // the address the page answered at
	title, action, href string
	requestID           string
	body                string
}

var (
	pageTitle     = regexp.MustCompile(`<h1>([^<]*)</h1>`)
	pageAction    = regexp.MustCompile(`<a class="button" href="([^"]*)">([^<]*)</a>`)
	pageRequestID = regexp.MustCompile(`· request ([A-Za-z0-9_-]+)`)
)

// navigate loads rawURL in b as a browser navigates (following redirects) and reads the page.
func navigate(t *testing.T, b *http.Client, method, rawURL string) shown {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readShown(t, resp)
}

// readShown reads the page of resp.
func readShown(t *testing.T, resp *http.Response) shown {
	t.Helper()
	body := readBody(t, resp)
	s := shown{status: resp.StatusCode, path: resp.Request.URL.Path, body: body}
	if m := pageTitle.FindStringSubmatch(body); m != nil {
		s.title = html.UnescapeString(m[1])
	}
	if m := pageAction.FindStringSubmatch(body); m != nil {
		s.href, s.action = html.UnescapeString(m[1]), html.UnescapeString(m[2])
	}
	if m := pageRequestID.FindStringSubmatch(body); m != nil {
		s.requestID = m[1]
	}
	return s
}

// check compares the page with the status, title, action and action target it should have.
func (s shown) check(t *testing.T, what string, status int, title, action, href string) {
	t.Helper()
	if s.status != status || s.title != title || s.action != action || s.href != href {
		t.Errorf("%s: got %d %q with %q -> %q, want %d %q with %q -> %q\n%s",
			what, s.status, s.title, s.action, s.href, status, title, action, href, s.body)
	}
}

// TestUnlinkedPageNamesTheCause: a person without a Headscale user learns why, as the linker
// found it, and what to do; the page survives a reload, and its request ID is the log line's.
func TestUnlinkedPageNamesTheCause(t *testing.T) {
	again := "/oauth2/start?rd=" + url.QueryEscape("/app?tab=1")
	tests := []struct {
		name                 string
		users                [][4]string // Headscale users: id, name, email, providerId
		claims               map[string]any
		title, action, href  string
		reasonLogged, person string
	}{
		{"no user", nil,
			map[string]any{"sub": "carol-sub", "email": "carol@example.com", "email_verified": true},
			"No Headscale user", "Sign in again", again, "no user with this email", "carol@example.com"},
		{"email not verified", [][4]string{{"7", "erin", "erin@example.com", ""}},
			map[string]any{"sub": "erin-sub", "email": "erin@example.com", "email_verified": false},
			"Your email is not verified", "Sign in again", again, "email not verified", "erin@example.com"},
		{"no email", [][4]string{{"7", "erin", "erin@example.com", ""}},
			map[string]any{"sub": "erin-sub"},
			"Your email was not shared", "Sign in again", again, "no email", "did not tell headgate your email"},
		{"email on two users", [][4]string{{"7", "erin", "erin@example.com", ""}, {"8", "erin2", "Erin@example.com", ""}},
			map[string]any{"sub": "erin-sub", "email": "erin@example.com", "email_verified": true},
			"Your email belongs to several Headscale users", "Sign in again", again, "ambiguous email (2 users)", "erin@example.com"},
		{"email of another identity", [][4]string{{"7", "erin", "erin@example.com", "https://other.example.com/erin"}},
			map[string]any{"sub": "erin-sub", "email": "erin@example.com", "email_verified": true},
			"Your Headscale user belongs to another sign-in", "Sign out", "/oauth2/sign_out", "email belongs to the user of another identity", "erin@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.memory = true })
			for _, u := range tt.users {
				e.headscale.addUser(u[0], u[1], u[2], u[3])
			}
			e.idp.SetUser(tt.claims)
			b := newBrowser(t)
			got := navigate(t, b, http.MethodGet, e.srv.URL+"/app?tab=1")
			got.check(t, "sign-in", http.StatusForbidden, tt.title, tt.action, tt.href)
			if got.path != failurePath {
				t.Errorf("the page answered at %s, want %s", got.path, failurePath)
			}
			if !strings.Contains(got.body, tt.person) {
				t.Errorf("the page does not say %q: %s", tt.person, got.body)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, tt.reasonLogged) || got.requestID == "" || !strings.Contains(logs, "request_id="+got.requestID) {
				t.Errorf("the log lacks the reason %q or the page's request ID %q:\n%s", tt.reasonLogged, got.requestID, logs)
			}
			reloaded := navigate(t, b, http.MethodGet, e.srv.URL+got.path)
			if reloaded.body != got.body || reloaded.status != got.status {
				t.Errorf("reloaded: got %d %q, want the same page again", reloaded.status, reloaded.title)
			}
			if n := e.upstream.count(); n != 0 {
				t.Errorf("the upstream received %d requests, want none", n)
			}
		})
	}
}

// TestUnlinkedPageOfASession: a signed-in person whom a route turns away for want of a
// Headscale user gets the page of the cause too, whose sign-in returns to where they were.
func TestUnlinkedPageOfASession(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.edit = func(c *Config) {
			c.Routes = []RouteConfig{{Path: "/open/", Upstream: c.Upstream, Unlinked: "allow"}}
		}
	})
	e.headscale.addUser("7", "erin", "erin@example.com", "")
	e.idp.SetUser(map[string]any{"sub": "erin-sub", "email": "erin@example.com", "email_verified": false})
	b := newBrowser(t)
	if got := navigate(t, b, http.MethodGet, e.srv.URL+"/open/x"); got.status != http.StatusOK {
		t.Fatalf("sign-in at the route that lets unlinked people in: got %d %q", got.status, got.body)
	}
	got := navigate(t, b, http.MethodGet, e.srv.URL+"/admin/x")
	got.check(t, "the session at a route that needs a Headscale user", http.StatusForbidden,
		"Your email is not verified", "Sign in again", "/oauth2/start?rd="+url.QueryEscape("/admin/x"))
}

// TestSignInFailureOnReload: a sign-in that failed shows the same page when reloaded, not
// "Sign-in expired"; once the page is old it says there is nothing to show, and after a
// sign-in that succeeds, that the person is signed in. The cookie that carries it never
// reaches the upstream.
func TestSignInFailureOnReload(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	e.idp.AuthorizeError("access_denied")
	b := newBrowser(t)
	got := navigate(t, b, http.MethodGet, e.srv.URL+"/app")
	got.check(t, "refused sign-in", http.StatusForbidden, "Sign-in refused", "Try again", "/oauth2/start?rd=%2Fapp")
	if !strings.Contains(got.body, "access_denied") {
		t.Errorf("the page does not name the provider's error: %s", got.body)
	}
	for i := range 2 {
		again := navigate(t, b, http.MethodGet, e.srv.URL+failurePath)
		if again.body != got.body {
			t.Errorf("reload %d: got %d %q, want the same page", i, again.status, again.title)
		}
	}
	navigate(t, b, http.MethodGet, e.srv.URL+"/admin/healthz") // a skip_auth path, proxied
	if c := e.upstream.last().Header.Get("Cookie"); strings.Contains(c, failureCookie) {
		t.Errorf("the upstream received the failure cookie: %q", c)
	}
	navigate(t, newBrowser(t), http.MethodGet, e.srv.URL+failurePath).check(t, "another browser",
		http.StatusOK, "Nothing to show", "Sign in", "/oauth2/start?rd=%2F")

	// A new failure, then a sign-in that succeeds: the failure's page is gone.
	if failed := navigate(t, b, http.MethodGet, e.srv.URL+"/app"); failed.title != "Sign-in refused" {
		t.Fatalf("the second sign-in: got %d %q, want it refused", failed.status, failed.title)
	}
	e.idp.AuthorizeError("")
	if got := navigate(t, b, http.MethodGet, e.srv.URL+"/app"); got.status != http.StatusOK {
		t.Fatalf("sign-in: got %d %q", got.status, got.body)
	}
	signedIn := navigate(t, b, http.MethodGet, e.srv.URL+failurePath)
	signedIn.check(t, "after a sign-in that succeeded", http.StatusOK, "You are signed in", "Continue", "/")
	if !strings.Contains(signedIn.body, "alice@example.com") {
		t.Errorf("the page does not name the person: %s", signedIn.body)
	}

	e.idp.AuthorizeError("access_denied")
	late := newBrowser(t)
	navigate(t, late, http.MethodGet, e.srv.URL+"/app")
	e.clock.Advance(11 * time.Minute) // past session.login_timeout
	navigate(t, late, http.MethodGet, e.srv.URL+failurePath).check(t, "an old page",
		http.StatusOK, "Nothing to show", "Sign in", "/oauth2/start?rd=%2F")
}
