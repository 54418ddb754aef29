package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const idTokenCookie = "_headgate_idtoken"

// jarCookie returns the browser's cookie called name, or nil.
func (e *testEnv) jarCookie(t *testing.T, b *http.Client, name string) *http.Cookie {
	t.Helper()
	for _, c := range b.Jar.Cookies(mustURL(t, e.srv.URL)) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestSignOutSendsIDTokenHint: with oidc.sign_out_at_provider, the ID token the session was
// signed in with is kept in a cookie of its own, which never reaches the upstream, goes to the
// provider's end-session endpoint as id_token_hint, and is cleared at sign-out.
func TestSignOutSendsIDTokenHint(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.providerSignOut = true })
	withAlice(e)
	b, session := e.signedIn(t)
	hint := e.jarCookie(t, b, idTokenCookie)
	if hint == nil {
		t.Fatalf("the browser has no %s cookie after signing in", idTokenCookie)
	}
	issued := e.idp.IDTokens()
	if len(issued) != 1 {
		t.Fatalf("the provider issued %d ID tokens, want 1", len(issued))
	}
	if strings.Contains(hint.Value, issued[0]) {
		t.Error("the ID token is in the cookie in the clear")
	}

	cookies := session.Name + "=" + session.Value + "; theme=dark; " + hint.Name + "=" + hint.Value
	h := http.Header{"Cookie": {cookies}}
	if resp := e.get(t, "/api", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("/api: got %d, want 200", resp.StatusCode)
	}
	if got := e.upstream.last().Header.Values("Cookie"); len(got) != 1 || got[0] != "theme=dark" {
		t.Errorf("the upstream got Cookie %q, want only theme=dark", got)
	}
	resp := e.get(t, "/oauth2/auth", h)
	if got := resp.Header.Get(headerAuthRequestCookie); got != "theme=dark" {
		t.Errorf("forward-auth passes Cookie %q on, want only theme=dark", got)
	}

	resp = e.get(t, "/oauth2/sign_out?rd=/bye", h)
	end, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(end.String(), e.idp.URL) {
		t.Fatalf("sign-out: got %d to %q, want 302 to the provider", resp.StatusCode, end)
	}
	if got := end.Query().Get("id_token_hint"); got != issued[0] {
		t.Errorf("id_token_hint: got %.40q, want the ID token issued at sign-in", got)
	}
	if !expires(resp, idTokenCookie) || !expires(resp, session.Name) {
		t.Errorf("sign-out set %v, want the session and the ID-token cookie expired", resp.Header.Values("Set-Cookie"))
	}

	// A browser that still sends them has its dead session's ID-token cookie cleared as well.
	resp = e.get(t, "/api", h)
	if resp.StatusCode != http.StatusUnauthorized || !expires(resp, idTokenCookie) {
		t.Errorf("/api after sign-out: got %d and %v, want 401 with the ID-token cookie expired",
			resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
}

// TestIDTokenHintTooLarge: an ID token too large for a cookie is not kept, the sign-out at the
// provider goes without the hint, and the first such token is logged.
func TestIDTokenHintTooLarge(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.providerSignOut = true })
	withAlice(e)
	e.idp.Mutate(func(claims map[string]any) { claims["picture"] = strings.Repeat("p", 4000) })
	b, session := e.signedIn(t)
	if c := e.jarCookie(t, b, idTokenCookie); c != nil {
		t.Errorf("the browser got a %d-byte %s cookie, want none", len(c.Value), idTokenCookie)
	}
	resp := e.get(t, "/oauth2/sign_out", http.Header{"Cookie": {session.Name + "=" + session.Value}})
	end, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || end.Query().Has("id_token_hint") || !end.Query().Has("post_logout_redirect_uri") {
		t.Errorf("sign-out: got %d to %q, want 302 to the provider without id_token_hint", resp.StatusCode, end)
	}
	if n := strings.Count(e.logs.String(), "id token too large for a cookie"); n != 1 {
		t.Errorf("got %d log lines about the large ID token, want 1", n)
	}
}

// TestNoIDTokenCookieWithoutSignOutAtProvider: without oidc.sign_out_at_provider, no ID token is
// kept, and one an earlier configuration left is cleared at sign-in.
func TestNoIDTokenCookieWithoutSignOutAtProvider(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	b, _ := e.signedIn(t)
	if c := e.jarCookie(t, b, idTokenCookie); c != nil {
		t.Errorf("the browser got a %s cookie, want none", idTokenCookie)
	}
	b = newBrowser(t)
	b.Jar.SetCookies(mustURL(t, e.srv.URL), []*http.Cookie{{Name: idTokenCookie, Value: "left", Path: "/"}})
	resp := e.idp.login(t, b, e.srv.URL+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: got %d, want 200", resp.StatusCode)
	}
	readBody(t, resp)
	if c := e.jarCookie(t, b, idTokenCookie); c != nil {
		t.Errorf("the left %s cookie survived a sign-in, want it cleared", idTokenCookie)
	}
}

// expires reports whether resp expires the cookie called name.
func expires(resp *http.Response, name string) bool {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.MaxAge < 0 {
			return true
		}
	}
	return false
}
