package gateway

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestSignOutRevokesEverywhere(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	b, stolen := e.signedIn(t)
	api := http.Header{"Cookie": {stolen.Name + "=" + stolen.Value}}
	if resp := e.get(t, "/api", api); resp.StatusCode != http.StatusOK {
		t.Fatalf("before sign-out: got %d, want 200", resp.StatusCode)
	}
	resp, err := b.Get(e.srv.URL + "/oauth2/sign_out")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, "Signed out") {
		t.Errorf("sign-out page: got %q", body)
	}
	for _, c := range b.Jar.Cookies(mustURL(t, e.srv.URL)) {
		if c.Name == "_headgate" {
			t.Errorf("browser kept the session cookie after sign-out")
		}
	}
	if resp := e.get(t, "/api", api); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed cookie after sign-out: got %d, want 401", resp.StatusCode)
	}
}

func TestSignOutRedirectTarget(t *testing.T) {
	e := newTestEnv(t)
	tests := map[string]string{
		"/oauth2/sign_out?rd=/bye":                 "/bye",
		"/oauth2/sign_out?rd=//evil.example.com":   "/",
		"/oauth2/sign_out?rd=https://evil.example": "/",
	}
	for path, want := range tests {
		resp := e.get(t, path, nil)
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("%s: Location got %q, want %q", path, got, want)
		}
	}
}

func TestSignOutPathsEndTheSession(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.signOut = []string{"/admin/logout"} })
	withAlice(e)
	_, c := e.signedIn(t)
	before := e.upstream.count()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/admin/logout", strings.NewReader("x=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", c.Name+"="+c.Value)
	out, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if out.StatusCode != http.StatusOK {
		t.Errorf("POST /admin/logout: got %d, want headgate's signed-out page (200)", out.StatusCode)
	}
	if e.upstream.count() != before {
		t.Error("the sign-out path reached the upstream")
	}
	if resp := e.get(t, "/api", http.Header{"Cookie": {c.Name + "=" + c.Value}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after /admin/logout: got %d, want 401", resp.StatusCode)
	}
}

// TestSignOutPatterns: sign-out paths become routes of their own, each once, however they are
// spelled in the config: a trailing slash names that path alone (not what is below it), and a
// path Headplane's Logout also adds is not registered twice.
func TestSignOutPatterns(t *testing.T) {
	e := newTestEnv(t, withHeadplane, func(o *envOptions) {
		o.signOut = []string{"/admin/logout", "/bye/", "/admin/logout", "/admin/leave/"}
	})
	want := []string{"/admin/logout", "/admin/logout.data", "/bye/{$}", "/admin/leave/{$}", "/admin/leave/_.data"}
	if got := e.gw.signOutPatterns(); !slices.Equal(got, want) {
		t.Errorf("patterns: got %q, want %q", got, want)
	}
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	before := e.upstream.count()
	if resp := e.get(t, "/bye/more", h); resp.StatusCode != http.StatusOK || e.upstream.count() != before+1 {
		t.Errorf("/bye/more: got %d and %d upstream requests, want it proxied", resp.StatusCode, e.upstream.count()-before)
	}
	if resp := e.get(t, "/bye/", h); resp.StatusCode != http.StatusOK || e.upstream.count() != before+1 {
		t.Errorf("/bye/: got %d and %d upstream requests, want the signed-out page", resp.StatusCode, e.upstream.count()-before)
	}
	if resp := e.get(t, "/api", h); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after /bye/: got %d, want 401", resp.StatusCode)
	}
}

// TestCrossSiteSignOutNeedsConfirmation: another site can link, redirect or post to the
// sign-out URL, but only gets a page whose button signs out from headgate's own origin.
func TestCrossSiteSignOutNeedsConfirmation(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.signOut = []string{"/admin/logout"} })
	withAlice(e)
	tests := []struct {
		name, method, path string
		header             http.Header
		confirm            bool
	}{
		{"GET from another site", "GET", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
		{"GET sign_out_paths from another site", "GET", "/admin/logout", http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
		{"GET from a sibling subdomain", "GET", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"same-site"}}, false},
		{"GET from headgate's origin", "GET", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"same-origin"}}, false},
		{"GET typed into the address bar", "GET", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"none"}}, false},
		{"GET from a client that is not a browser", "GET", "/oauth2/sign_out?rd=/bye", nil, false},
		{"POST from another site", "POST", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
		{"POST from a sibling subdomain", "POST", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"same-site"}}, true},
		{"POST from another origin, old browser", "POST", "/oauth2/sign_out?rd=/bye", http.Header{"Origin": {"https://evil.example"}}, true},
		{"POST from headgate's origin, old browser", "POST", "/oauth2/sign_out?rd=/bye", http.Header{"Origin": {e.srv.URL}}, false},
		{"POST from headgate's origin", "POST", "/oauth2/sign_out?rd=/bye", http.Header{"Sec-Fetch-Site": {"same-origin"}}, false},
		{"hostile target from another site", "GET", "/oauth2/sign_out?rd=https://evil.example", http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := e.signedIn(t)
			session := http.Header{"Cookie": {c.Name + "=" + c.Value}}
			req, err := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			req.Header.Set("Cookie", session.Get("Cookie"))
			req.Header.Set("Accept", "text/html")
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			after := e.get(t, "/api", session).StatusCode
			if !tt.confirm {
				if resp.StatusCode == http.StatusOK && strings.Contains(body, "Sign out?") {
					t.Errorf("got the confirmation page, want the sign-out done")
				}
				if after != http.StatusUnauthorized {
					t.Errorf("session after sign-out: got %d, want 401", after)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sign out?") {
				t.Errorf("got %d %q, want 200 and the confirmation page", resp.StatusCode, body)
			}
			for _, sc := range resp.Cookies() {
				if sc.Name == c.Name {
					t.Errorf("the confirmation page touched the session cookie: %v", sc)
				}
			}
			if after != http.StatusOK {
				t.Fatalf("session after a sign-out from another site: got %d, want 200 (still signed in)", after)
			}

			// The person confirms: the page's form posts from headgate's origin.
			action := formAction(t, body)
			wantAction, wantStatus := "/oauth2/sign_out", http.StatusOK // the signed-out page
			if strings.Contains(tt.path, "rd=") {
				wantAction, wantStatus = "/oauth2/sign_out?rd=%2F", http.StatusFound // to a safe target
			}
			if !strings.HasPrefix(action, wantAction) {
				t.Errorf("form action %q, want %s...", action, wantAction)
			}
			if strings.Contains(tt.path, "evil") && strings.Contains(action, "evil") {
				t.Errorf("form action %q carries the hostile target", action)
			}
			post, _ := http.NewRequest(http.MethodPost, e.srv.URL+action, nil)
			post.Header = http.Header{"Cookie": session["Cookie"], "Sec-Fetch-Site": {"same-origin"}, "Origin": {e.srv.URL}}
			confirmed, err := noRedirect.Do(post)
			if err != nil {
				t.Fatal(err)
			}
			confirmed.Body.Close()
			if confirmed.StatusCode != wantStatus {
				t.Errorf("confirmed sign-out: got %d, want %d", confirmed.StatusCode, wantStatus)
			}
			if got := e.get(t, "/api", session).StatusCode; got != http.StatusUnauthorized {
				t.Errorf("session after the confirmed sign-out: got %d, want 401", got)
			}
		})
	}
}

// formAction returns the action of the one form on page, unescaped.
func formAction(t *testing.T, page string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `<form method="post" action="`)
	if !ok {
		t.Fatalf("no POST form on the page: %q", page)
	}
	action, _, _ := strings.Cut(rest, `"`)
	return html.UnescapeString(action)
}

// TestSignOutAtProvider: with oidc.sign_out_at_provider, a sign-out also ends the session at
// the provider (RP-Initiated Logout) and comes back to a safe target; without it, or with the
// provider down, headgate signs out alone.
func TestSignOutAtProvider(t *testing.T) {
	follow := func(t *testing.T, e *testEnv, path string, h http.Header) []string {
		t.Helper()
		var hops []string
		next := e.srv.URL + path
		for range 5 {
			req, _ := http.NewRequest(http.MethodGet, next, nil)
			req.Header = h.Clone()
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			hops = append(hops, fmt.Sprintf("%d %s", resp.StatusCode, loc))
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http") {
				return hops // a page, or a redirect to headgate's own paths: the last hop
			}
			next = loc
		}
		t.Fatalf("too many redirects: %v", hops)
		return nil
	}
	tests := []struct {
		name, rd, want string
	}{
		{"with a return path", "/bye", "302 /bye"},
		{"without one", "", "200 "},
		{"with a hostile return", "https://evil.example/x", "302 /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.providerSignOut = true })
			withAlice(e)
			_, c := e.signedIn(t)
			h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
			path := "/oauth2/sign_out"
			if tt.rd != "" {
				path += "?rd=" + url.QueryEscape(tt.rd)
			}
			hops := follow(t, e, path, h)
			if got := hops[len(hops)-1]; got != tt.want {
				t.Errorf("hops %v: last %q, want %q", hops, got, tt.want)
			}
			calls := e.idp.EndSessions()
			if len(calls) != 1 {
				t.Fatalf("got %d end-session requests at the provider, want 1", len(calls))
			}
			if got, want := calls[0].Get("post_logout_redirect_uri"), e.srv.URL+"/oauth2/signed_out"; got != want {
				t.Errorf("post_logout_redirect_uri: got %q, want %q", got, want)
			}
			if strings.Contains(calls[0].Get("state"), "evil") {
				t.Errorf("the hostile target reached the provider as state %q", calls[0].Get("state"))
			}
			if got := e.get(t, "/api", h).StatusCode; got != http.StatusUnauthorized {
				t.Errorf("session after sign-out: got %d, want 401", got)
			}
		})
	}
	t.Run("a hostile state coming back", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.providerSignOut = true })
		for _, state := range []string{"//evil.example", "https://evil.example", "/\\evil.example"} {
			resp := e.get(t, "/oauth2/signed_out?state="+url.QueryEscape(state), nil)
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/" {
				t.Errorf("state %q: got %d to %q, want 302 to /", state, resp.StatusCode, loc)
			}
		}
	})
	t.Run("provider down", func(t *testing.T) {
		e := newTestEnv(t, func(o *envOptions) { o.providerSignOut = true })
		withAlice(e)
		_, c := e.signedIn(t)
		h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "Accept": {"text/html"}}
		e.idp.Down(true)
		e.clock.Advance(e.gw.timing.Probe) // the last check that the provider answered is forgotten
		resp := e.get(t, "/oauth2/sign_out", h)
		if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out") {
			t.Errorf("got %d %q, want headgate's signed-out page", resp.StatusCode, body)
		}
		if got := e.get(t, "/api", http.Header{"Cookie": h["Cookie"]}).StatusCode; got != http.StatusUnauthorized {
			t.Errorf("session after sign-out: got %d, want 401", got)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		e := newTestEnv(t)
		withAlice(e)
		_, c := e.signedIn(t)
		resp := e.get(t, "/oauth2/sign_out?rd=/bye", http.Header{"Cookie": {c.Name + "=" + c.Value}})
		if loc := resp.Header.Get("Location"); loc != "/bye" {
			t.Errorf("got Location %q, want /bye straight away", loc)
		}
		if n := len(e.idp.EndSessions()); n != 0 {
			t.Errorf("got %d end-session requests, want none", n)
		}
	})
}

// TestSignInPage: /oauth2/sign_in is a page that goes on to /oauth2/start by itself, with the
// same (checked) return target, for proxies that keep their 401 status around it.
func TestSignInPage(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	tests := []struct{ rd, want string }{
		{"/app/x?tab=1", "/oauth2/start?rd=%2Fapp%2Fx%3Ftab%3D1"},
		{"//evil.example.com/x", "/oauth2/start?rd=%2F"},
		{"https://evil.example.com/", "/oauth2/start?rd=%2F"},
		{"", "/oauth2/start?rd=%2F"},
	}
	for _, tt := range tests {
		resp := e.get(t, "/oauth2/sign_in?rd="+url.QueryEscape(tt.rd), nil) // a page whatever the Accept
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("rd %q: got %d, want 200", tt.rd, resp.StatusCode)
		}
		if want := `<meta http-equiv="refresh" content="0; url=` + tt.want + `">`; !strings.Contains(body, want) {
			t.Errorf("rd %q: page lacks %s:\n%s", tt.rd, want, body)
		}
		if want := `href="` + tt.want + `"`; !strings.Contains(body, want) {
			t.Errorf("rd %q: page lacks the button to %s", tt.rd, tt.want)
		}
	}
}
