package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// Authorization for upstream apps, against the real Dex and Headscale: groups at the identity
// provider, routes with access rules and headers of their own. Headscale's policy groups are
// in authz_policy_test.go, signed assertions in authz_assertion_test.go, and the refusal page
// in Chromium in authz_browser_test.go.

// groupScopes asks Dex for the groups claim, which it sends only for the groups scope.
var groupScopes = []string{"openid", "email", "profile", "groups"}

// aliceGroups is testbed.Alice's groups as headgate forwards them: sorted by bytes, joined by
// commas, each percent-encoded except letters, digits and "-._~:@/", written out here by hand.
const aliceGroups = "headplane-admins,ops%2C%20infra,%C3%A9quipe%20100%25"

// decodeGroups splits a groups header value on commas and percent-decodes each name.
func decodeGroups(t *testing.T, v string) []string {
	t.Helper()
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		name, err := url.PathUnescape(part)
		if err != nil {
			t.Errorf("groups %q: %v", v, err)
		}
		out = append(out, name)
	}
	return out
}

// checkHeader checks that h carries name exactly once, with value want.
func checkHeader(t *testing.T, what string, h http.Header, name, want string) {
	t.Helper()
	if got := h.Values(name); !slices.Equal(got, []string{want}) {
		t.Errorf("%s: %s: got %q, want [%q]", what, name, got, want)
	}
}

// withHeader returns header with name set to values as a client spells it.
func withHeader(header http.Header, name string, values ...string) http.Header {
	h := header.Clone()
	h[name] = values
	return h
}

// onlyRequest returns the one request under path that reached up, failing the test otherwise.
func onlyRequest(t *testing.T, up *testbed.Upstream, path string) testbed.Request {
	t.Helper()
	got := up.Requests(path)
	if len(got) != 1 {
		t.Fatalf("%s: the upstream at %s received %d requests, want 1", path, up.URL, len(got))
	}
	return got[0]
}

// TestIdPGroupsFromDex signs people in at an instance that asks Dex for the groups scope: the
// upstream and forward auth receive each person's groups exactly (a name holding a comma and a
// space, a percent sign or a letter beyond ASCII comes back whole), a client's copies never
// arrive, a person without groups gets no groups header, and an access rule on an IdP group
// lets in its member only.
func TestIdPGroupsFromDex(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	prefix := testPrefix(t)
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{
		"oidc": map[string]any{"scopes": groupScopes},
		"routes": []any{map[string]any{
			"path": prefix + "ops", "upstream": s.Upstream.URL,
			"access": map[string]any{"groups": []string{"ops, infra"}},
		}},
	}})
	alice := loginCookie(t, g, testbed.Alice, prefix+"alice/login")
	got := onlyRequest(t, s.Upstream, prefix+"alice/login")
	checkHeader(t, "alice's sign-in", got.Header, "X-Forwarded-Groups", aliceGroups)
	want := slices.Sorted(slices.Values(testbed.Alice.Groups))
	if names := decodeGroups(t, got.Header.Get("X-Forwarded-Groups")); !slices.Equal(names, want) {
		t.Errorf("alice's groups, decoded: got %q, want %q", names, want)
	}

	spoofed := api(alice)
	spoofed["X-Forwarded-Groups"] = []string{"mallory"}
	spoofed["x_forwarded_groups"] = []string{"mallory"}
	spoofed["X-Auth-Request-Groups"] = []string{"mallory"}
	if page := fetch(t, g, nil, http.MethodGet, prefix+"alice/spoofed", spoofed); page.Status != http.StatusOK {
		t.Fatalf("alice with spoofed groups: got %d, want 200", page.Status)
	}
	got = onlyRequest(t, s.Upstream, prefix+"alice/spoofed")
	checkNoSpoof(t, got.Header)
	checkHeader(t, "alice with spoofed groups", got.Header, "X-Forwarded-Groups", aliceGroups)

	page := fetch(t, g, nil, http.MethodGet, "/oauth2/auth", spoofed)
	if page.Status != http.StatusAccepted {
		t.Fatalf("/oauth2/auth for alice: got %d, want 202", page.Status)
	}
	checkNoSpoof(t, page.Header)
	checkHeader(t, "/oauth2/auth for alice", page.Header, "X-Forwarded-Groups", aliceGroups)
	checkHeader(t, "/oauth2/auth for alice", page.Header, "X-Auth-Request-Groups", aliceGroups)

	// The access rule names "ops, infra" as Dex spells it: Alice is in, Bob (developers) not.
	if page := fetch(t, g, nil, http.MethodGet, prefix+"ops/alice", api(alice)); page.Status != http.StatusOK {
		t.Errorf("alice under the ops route: got %d, want 200", page.Status)
	}
	bob := loginCookie(t, g, testbed.Bob, prefix+"bob/login")
	checkHeader(t, "bob's sign-in", onlyRequest(t, s.Upstream, prefix+"bob/login").Header, "X-Forwarded-Groups", "developers")
	page = fetch(t, g, nil, http.MethodGet, prefix+"ops/bob", withHeader(api(bob), "Accept", testbed.BrowserAccept))
	checkReadablePage(t, "bob under the ops route", page, http.StatusForbidden)
	if !strings.Contains(page.Body, "Not allowed here") || strings.Contains(page.Body, "infra") {
		t.Errorf("bob under the ops route: got %q, want the Not allowed page, without the rule's group", page.Body)
	}
	checkNoneReached(t, prefix+"ops/bob")

	// Dave has no groups at Dex: no groups header at all.
	loginCookie(t, g, testbed.Dave, prefix+"dave/login")
	if v := onlyRequest(t, s.Upstream, prefix+"dave/login").Header.Values("X-Forwarded-Groups"); len(v) != 0 {
		t.Errorf("dave's sign-in: X-Forwarded-Groups: got %q, want none", v)
	}
}

// TestRoutesByHost runs two upstreams behind one instance: a route for app.example.test, with
// X-WEBAUTH-USER set to the Headscale user and an access rule naming Bob's Headscale user,
// and the default route for every other host. The host picks the upstream (without case or
// port); the route's header arrives with the real user, never a client's copy, on either
// route; a person the rule leaves out gets a 403 and the app receives nothing.
func TestRoutesByHost(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	app, err := s.StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{
		"routes": []any{map[string]any{
			"name": "app", "host": "app.example.test", "upstream": app.URL, "preserve_host": false,
			"headers": map[string]any{"X-WEBAUTH-USER": "headscale_user"},
			"access":  map[string]any{"headscale_users": []string{accounts.Bob.Name}},
		}},
	}})
	prefix := testPrefix(t)
	bob := loginCookie(t, g, testbed.Bob, prefix+"bob/login")
	spoofed := api(bob)
	for _, name := range []string{"X-WEBAUTH-USER", "x-webauth-user", "X_Webauth_User"} {
		spoofed[name] = []string{"mallory"}
	}

	for _, host := range []string{"app.example.test", "APP.Example.Test:8443"} {
		path := prefix + "app/" + url.PathEscape(host)
		if page := fetch(t, g, nil, http.MethodGet, path, withHeader(spoofed, "Host", host)); page.Status != http.StatusOK {
			t.Fatalf("bob at %s: got %d, want 200", host, page.Status)
		}
		got := onlyRequest(t, app, path)
		checkNoSpoof(t, got.Header)
		checkHeader(t, "bob at "+host, got.Header, "X-Webauth-User", accounts.Bob.Name)
		checkIdentity(t, got.Header, testbed.Bob, accounts.Bob)
		if want := strings.TrimPrefix(app.URL, "http://"); got.Host != want {
			t.Errorf("bob at %s: the app received Host %q, want its own %q (preserve_host: false)", host, got.Host, want)
		}
		checkNoneReached(t, path)
	}

	// Any other host is the default route's: the stack's upstream, the browser's Host, and no
	// X-WEBAUTH-USER, whoever sent one.
	path := prefix + "default"
	if page := fetch(t, g, nil, http.MethodGet, path, withHeader(spoofed, "Host", "other.example.test")); page.Status != http.StatusOK {
		t.Fatalf("bob at another host: got %d, want 200", page.Status)
	}
	got := onlyRequest(t, s.Upstream, path)
	checkNoSpoof(t, got.Header)
	checkIdentity(t, got.Header, testbed.Bob, accounts.Bob)
	if v := got.Header.Values("X-Webauth-User"); len(v) != 0 {
		t.Errorf("bob at another host: X-Webauth-User: got %q, want none", v)
	}
	if got.Host != "other.example.test" {
		t.Errorf("bob at another host: the upstream received Host %q, want other.example.test", got.Host)
	}
	if n := len(app.Requests(path)); n != 0 {
		t.Errorf("bob at another host: the app received %d requests, want none", n)
	}

	// Alice is linked, but not the Headscale user the app's rule names.
	alice := loginCookie(t, g, testbed.Alice, prefix+"alice/login")
	path = prefix + "app/alice"
	page := fetch(t, g, nil, http.MethodGet, path, http.Header{"Cookie": {alice}, "Accept": {testbed.BrowserAccept}, "Host": {"app.example.test"}})
	checkReadablePage(t, "alice at the app", page, http.StatusForbidden)
	if !strings.Contains(page.Body, "Not allowed here") || !strings.Contains(page.Body, testbed.Alice.Email) ||
		strings.Contains(page.Body, accounts.Bob.Name) {
		t.Errorf("alice at the app: got %q, want the Not allowed page naming her, not the rule's user", page.Body)
	}
	if page := fetch(t, g, nil, http.MethodGet, path, withHeader(api(alice), "Host", "app.example.test")); page.Status != http.StatusForbidden {
		t.Errorf("alice at the app, API: got %d, want 403", page.Status)
	}
	if page := fetch(t, g, nil, http.MethodGet, prefix+"alice/default", api(alice)); page.Status != http.StatusOK {
		t.Errorf("alice at the default route: got %d, want 200", page.Status)
	}
	if n := len(app.Requests(prefix + "alice")); n != 0 {
		t.Errorf("the app received %d of alice's requests, want none", n)
	}
	if n := len(app.Requests(path)); n != 0 {
		t.Errorf("the app received %d of alice's requests, want none", n)
	}
}
