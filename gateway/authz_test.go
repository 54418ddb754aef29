package gateway

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
)

// getAt sends a request for path with Host host to the gateway, without following redirects.
func (e *testEnv) getAt(t *testing.T, host, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path // exactly as written on the wire
	req.Host = host
	resp := e.do(t, req, header)
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// splitGroups reads a groups header back, as an upstream would.
func splitGroups(t *testing.T, h string) []string {
	t.Helper()
	var out []string
	for part := range strings.SplitSeq(h, ",") {
		g, err := url.PathUnescape(part)
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		out = append(out, g)
	}
	return out
}

// TestGroupsForwarded: the identity provider's groups (from a nested claim) and the Headscale
// policy's groups reach the upstream and forward-auth answers, whole whatever they hold, and a
// client's copies of the groups headers never do.
func TestGroupsForwarded(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.edit = func(c *Config) { c.OIDC.GroupsClaim = "realm_access.roles" }
	})
	withAlice(e)
	e.idp.SetUser(map[string]any{"sub": "alice-sub", "email": "alice@example.com", "email_verified": true,
		"realm_access": map[string]any{"roles": []string{"ops, infra", "dev"}}})
	e.headscale.set(func(h *headscaleDouble) {
		h.policy = `{"groups": {"group:admins": ["alice@"], "group:others": ["bob@"]}} // HuJSON
`
	})
	if err := e.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, c := e.signedIn(t)
	spoof := http.Header{"Cookie": {c.Name + "=" + c.Value}, "X-Forwarded-Groups": {"admins"},
		"X-Headscale-Groups": {"group:root"}, "X_Auth_Request_Groups": {"root"}}
	if resp := e.get(t, "/app", spoof); resp.StatusCode != http.StatusOK {
		t.Fatalf("proxied: got %d", resp.StatusCode)
	}
	up := e.upstream.last().Header
	if got := splitGroups(t, up.Get("X-Forwarded-Groups")); !slices.Equal(got, []string{"dev", "ops, infra"}) || len(up.Values("X-Forwarded-Groups")) != 1 {
		t.Errorf("X-Forwarded-Groups: got %q", up.Values("X-Forwarded-Groups"))
	}
	if got := up.Values("X-Headscale-Groups"); !slices.Equal(got, []string{"group:admins"}) {
		t.Errorf("X-Headscale-Groups: got %q, want [group:admins]", got)
	}
	if got := up.Values("X-Auth-Request-Groups"); len(got) != 0 {
		t.Errorf("a client's X_Auth_Request_Groups reached the upstream: %q", got)
	}
	resp := e.get(t, "/oauth2/auth", spoof)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-Groups") != "dev,ops%2C%20infra" ||
		resp.Header.Get("X-Headscale-Groups") != "group:admins" {
		t.Errorf("forward auth: got %d %q", resp.StatusCode, resp.Header)
	}
}

// TestAccessRules: a signed-in, linked person whom a route's rules leave out gets a 403 page
// naming what they lack, not the rule; the upstream sees nothing; forward auth and userinfo
// refuse alike; a person the rules name passes.
func TestAccessRules(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.edit = func(c *Config) {
			c.Access = AccessConfig{Groups: []string{"secret-admins"}, HeadscaleGroups: []string{"ops"}}
		}
	})
	withAlice(e)
	b, first := e.signIn(t, "/app") // signed in, then refused
	first.Body.Close()
	c := e.sessionCookie(t, b)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "Accept": {"text/html"}}
	sent := e.upstream.count()
	resp, body := e.getAt(t, "gate.example.com", "/app", h)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "membership of an allowed group") || strings.Contains(body, "secret-admins") {
		t.Errorf("refused person: got %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/oauth2/auth", "/oauth2/userinfo"} {
		if resp := e.get(t, path, h); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got %d, want 403", path, resp.StatusCode)
		}
	}
	if e.upstream.count() != sent {
		t.Error("the upstream saw a refused person")
	}
	if !strings.Contains(e.logs.String(), "not allowed on route default") {
		t.Errorf("no log line for the refusal:\n%s", e.logs.String())
	}

	// Put into the Headscale group the rules name (written without "group:" in the rules).
	e.headscale.set(func(h *headscaleDouble) { h.policy = `{"groups": {"group:ops": ["alice@"]}}` })
	if err := e.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.getAt(t, "gate.example.com", "/app", h); resp.StatusCode != http.StatusOK {
		t.Errorf("allowed person: got %d %q", resp.StatusCode, body)
	}
}

// TestRoutes: each route proxies to its own upstream with its own rules and header names; a
// client's copies of any route's header names are removed on every route; a host no route
// takes gets 404 without a default route.
func TestRoutes(t *testing.T) {
	grafana := newRecorder(t, nil)
	e := newTestEnv(t, func(o *envOptions) {
		o.edit = func(c *Config) {
			c.Routes = []RouteConfig{
				{Host: "grafana.example.com", Upstream: grafana.srv.URL, PreserveHost: new(false),
					Headers:  map[string]string{"X-WEBAUTH-USER": "headscale_user", "X-Webauth-Email": "email"},
					SkipAuth: []string{"/api/health"}},
				{Name: "admin-only", Path: "/admin", Upstream: c.Upstream,
					Access: AccessConfig{HeadscaleUsers: []string{"root"}}},
			}
		}
	})
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "X-Webauth-User": {"root"}, "X_WEBAUTH_USER": {"root"}}

	if resp, body := e.getAt(t, "grafana.example.com", "/d/1", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("grafana: got %d %q", resp.StatusCode, body)
	}
	up := grafana.last()
	if got := up.Header.Values("X-Webauth-User"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("grafana's X-WEBAUTH-USER: got %q, want [alice]", got)
	}
	if got := up.Header.Get("X-Webauth-Email"); got != "alice@example.com" {
		t.Errorf("grafana's X-WEBAUTH-EMAIL: got %q", got)
	}
	if up.Host == "grafana.example.com" {
		t.Error("preserve_host: false kept the browser's Host")
	}
	if resp, _ := e.getAt(t, "GRAFANA.example.com:443", "/api/health", nil); resp.StatusCode != http.StatusOK || grafana.last().Header.Get("X-Webauth-User") != "" {
		t.Errorf("grafana's skip_auth path: got %d", resp.StatusCode)
	}

	// The default route: the client's X-WEBAUTH-USER is removed there too.
	if resp, _ := e.getAt(t, "gate.example.com", "/app", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("default route: got %d", resp.StatusCode)
	}
	if got := e.upstream.last().Header.Values("X-Webauth-User"); len(got) != 0 {
		t.Errorf("a client's X-WEBAUTH-USER reached the default route: %q", got)
	}

	// /admin is for root only, however it is spelled.
	sent := e.upstream.count()
	for _, p := range []string{"/admin", "/admin/", "/admin/users", "/Admin/users", "/ADMIN", "/x%2f..%2fadmin/users", "/admin%2fusers", "/admin;x/users"} {
		if resp, _ := e.getAt(t, "gate.example.com", p, h); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusMovedPermanently {
			t.Errorf("%s: got %d, want 403", p, resp.StatusCode)
		}
	}
	if n := e.upstream.count() - sent; n != 0 {
		t.Errorf("the upstream received %d requests for /admin, want none", n)
	}
}

// TestRoutesWithoutDefault: with routes only, a request no route takes gets a 404 page.
func TestRoutesWithoutDefault(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.edit = func(c *Config) {
			c.Routes = []RouteConfig{{Host: "app.example.com", Upstream: c.Upstream}}
			c.Upstream = ""
		}
	})
	withAlice(e)
	resp, body := e.getAt(t, "other.example.com", "/", http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "No application") {
		t.Errorf("got %d %q, want the 404 page", resp.StatusCode, body)
	}
	if resp, _ := e.getAt(t, "app.example.com", "/", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a route without a session: got %d, want 401", resp.StatusCode)
	}
}

// TestForwardAuthRoutes: a forward-auth check applies the rules of the route it is for when a
// trusted proxy names the request, and the rules of every route when anyone else does.
func TestForwardAuthRoutes(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.trusted = []string{"127.0.0.1/32"}
		o.edit = func(c *Config) {
			c.Routes = []RouteConfig{{Host: "vault.example.com", Upstream: c.Upstream,
				Access: AccessConfig{Emails: []string{"root@example.com"}}}}
		}
	})
	withAlice(e)
	_, c := e.signedIn(t)
	check := func(host, uri string) int {
		h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
		if host != "" {
			h.Set("X-Forwarded-Host", host)
			h.Set("X-Forwarded-Uri", uri)
		}
		return e.get(t, "/oauth2/auth", h).StatusCode
	}
	if got := check("app.example.com", "/x"); got != http.StatusAccepted {
		t.Errorf("another host: got %d, want 202", got)
	}
	if got := check("vault.example.com", "/x"); got != http.StatusForbidden {
		t.Errorf("vault: got %d, want 403", got)
	}
	if got := check("", ""); got != http.StatusForbidden {
		t.Errorf("a check that names no request: got %d, want 403 (every route's rules)", got)
	}

	untrusted := newTestEnv(t, func(o *envOptions) {
		o.edit = func(c *Config) {
			c.Routes = []RouteConfig{{Host: "vault.example.com", Upstream: c.Upstream,
				Access: AccessConfig{Emails: []string{"root@example.com"}}}}
		}
	})
	withAlice(untrusted)
	_, uc := untrusted.signedIn(t)
	h := http.Header{"Cookie": {uc.Name + "=" + uc.Value}, "X-Forwarded-Host": {"app.example.com"}, "X-Forwarded-Uri": {"/x"}}
	if got := untrusted.get(t, "/oauth2/auth", h).StatusCode; got != http.StatusForbidden {
		t.Errorf("an untrusted client naming another host: got %d, want 403", got)
	}
}

// verifyAssertion verifies token for the route named audience as an upstream does, from the
// gateway's published keys, and returns the provider it discovered and the verified token.
func verifyAssertion(t *testing.T, e *testEnv, audience, token string) (*oidc.Provider, *oidc.IDToken) {
	t.Helper()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.srv.URL+"/oauth2")
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: audience}).Verify(ctx, token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return provider, idt
}

// TestAssertionOnRequests: every authenticated request carries an assertion an upstream
// verifies with go-oidc from headgate's published keys, for its own route only; a client's
// copy of the header never arrives; skip_auth requests carry none.
func TestAssertionOnRequests(t *testing.T) {
	other := newRecorder(t, nil)
	e := newTestEnv(t, func(o *envOptions) {
		o.skipAuth = []string{"/healthz"}
		o.edit = func(c *Config) {
			c.Assertion.Header = "X-Headgate-Assertion"
			c.Routes = []RouteConfig{{Name: "other", Host: "other.example.com", Upstream: other.srv.URL}}
		}
	})
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "X-Headgate-Assertion": {"forged"}}
	if resp, _ := e.getAt(t, "gate.example.com", "/app", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d", resp.StatusCode)
	}
	tokens := e.upstream.last().Header.Values("X-Headgate-Assertion")
	if len(tokens) != 1 || tokens[0] == "forged" {
		t.Fatalf("assertion: got %q", tokens)
	}
	ctx := context.Background()
	provider, idt := verifyAssertion(t, e, "default", tokens[0])
	var claims struct {
		Email         string `json:"email"`
		HeadscaleUser string `json:"headscale_user"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Subject != "alice-sub" || claims.HeadscaleUser != "alice" || claims.Email != "alice@example.com" {
		t.Errorf("claims: %q %+v %v", idt.Subject, claims, err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "other"}).Verify(ctx, tokens[0]); err == nil {
		t.Error("the default route's assertion verified for the route other")
	}
	if resp, _ := e.getAt(t, "gate.example.com", "/app", h); resp.StatusCode != http.StatusOK || e.upstream.last().Header.Get("X-Headgate-Assertion") != tokens[0] {
		t.Error("the assertion was signed again within its life")
	}
	if resp, _ := e.getAt(t, "other.example.com", "/", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("other route: got %d", resp.StatusCode)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "other"}).Verify(ctx, other.last().Header.Get("X-Headgate-Assertion")); err != nil {
		t.Errorf("the route other's assertion: %v", err)
	}
	if resp, _ := e.getAt(t, "gate.example.com", "/healthz", h); resp.StatusCode != http.StatusOK || len(e.upstream.last().Header.Values("X-Headgate-Assertion")) != 0 {
		t.Error("a skip_auth request carried an assertion")
	}
	resp := e.get(t, "/oauth2/auth", http.Header{"Cookie": {c.Name + "=" + c.Value}})
	if _, err := provider.Verifier(&oidc.Config{ClientID: "default"}).Verify(ctx, resp.Header.Get("X-Headgate-Assertion")); err != nil {
		t.Errorf("forward auth's assertion: %v", err)
	}
}
