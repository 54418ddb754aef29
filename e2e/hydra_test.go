package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// hydraStack starts a stack of its own with Redis and Ory Hydra beside Dex, Headscale CLI
// users for the people of Hydra's login app (linked by verified email), and n headgate
// instances that sign in at Hydra and share the stack's Redis.
func hydraStack(t *testing.T, n int, extra map[string]any) (*testbed.Stack, *testbed.Hydra, []*testbed.Gateway) {
	t.Helper()
	s := ownStack(t, testbed.Options{Redis: true, MaxGateways: max(n, 2)})
	ctx := t.Context()
	h, err := s.StartHydra(ctx)
	if err != nil {
		t.Fatalf("start hydra (it is built by: make peers): %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of hydra's log ---\n%s", h.Tail(40))
		}
		h.Close()
	})
	for _, u := range testbed.HydraPeople() {
		if _, err := s.CreateCLIUser(ctx, u.Login, u.Email); err != nil {
			t.Fatal(err)
		}
	}
	oidc := h.OIDC()
	for k, v := range extra {
		oidc[k] = v
	}
	var gs []*testbed.Gateway
	for range n {
		gs = append(gs, startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{"oidc": oidc}}))
	}
	return s, h, gs
}

// hydraLogin signs u in at g through a browser with jar and returns the page the flow ends on.
func hydraLogin(t *testing.T, g *testbed.Gateway, jar http.CookieJar, u testbed.HydraUser, path string) *testbed.Page {
	t.Helper()
	page, err := testbed.HydraLogin(t.Context(), jar, g.URL+path, u)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// hydraSignedIn signs u in at g with a fresh browser, checks that it reaches the upstream, and
// returns the session cookie as a Cookie header value.
func hydraSignedIn(t *testing.T, g *testbed.Gateway, u testbed.HydraUser, path string) string {
	t.Helper()
	jar := newJar(t)
	if page := hydraLogin(t, g, jar, u, path); page.Status != http.StatusOK || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("sign-in of %s through hydra: got %d, want the upstream's 200 (%s)", u.Login, page.Status, strings.Join(page.Hops, " -> "))
	}
	cookie := sessionCookies(t, g, jar)
	if cookie == "" {
		t.Fatalf("the sign-in of %s left no session cookie", u.Login)
	}
	return cookie
}

// TestHydraSignIn signs in through Hydra and checks the claims headgate reads from it: a sub
// containing "/", the groups of the groups scope (through oidc.groups_claim), and an email
// Hydra does not vouch for, which must not link.
func TestHydraSignIn(t *testing.T) {
	t.Parallel()
	s, _, gs := hydraStack(t, 1, map[string]any{"groups_claim": "groups"})
	g := gs[0]
	prefix := testPrefix(t)

	cookie := hydraSignedIn(t, g, testbed.HydraFrank, prefix+"frank")
	got := s.Upstream.Requests(prefix + "frank")
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests of frank, want 1", len(got))
	}
	checkHeader(t, "frank through hydra", got[0].Header, "X-Headscale-User", testbed.HydraFrank.Login)
	checkHeader(t, "frank through hydra", got[0].Header, "X-Forwarded-Email", testbed.HydraFrank.Email)
	if groups := decodeGroups(t, got[0].Header.Get("X-Forwarded-Groups")); !slices.Equal(groups, testbed.HydraFrank.Groups) {
		t.Errorf("X-Forwarded-Groups: got %q, want %q", groups, testbed.HydraFrank.Groups)
	}
	page := fetch(t, g, nil, http.MethodGet, "/oauth2/userinfo", api(cookie))
	var info struct {
		User  string `json:"user"`
		Email string `json:"email"`
	}
	if err := json.Unmarshal([]byte(page.Body), &info); err != nil || page.Status != http.StatusOK {
		t.Fatalf("/oauth2/userinfo: got %d %q (%v), want 200 with JSON", page.Status, page.Body, err)
	}
	if info.User != testbed.HydraFrank.Subject || info.Email != testbed.HydraFrank.Email {
		t.Errorf("/oauth2/userinfo: got user %q email %q, want %q %q", info.User, info.Email,
			testbed.HydraFrank.Subject, testbed.HydraFrank.Email)
	}

	// Gina's Headscale user has her email, but Hydra says it is not verified.
	page = hydraLogin(t, g, newJar(t), testbed.HydraGina, prefix+"gina")
	if page.Status != http.StatusForbidden || !strings.Contains(page.Body, testbed.HydraGina.Email) {
		t.Errorf("gina through hydra: got %d, want 403 naming %s (%s)", page.Status, testbed.HydraGina.Email, strings.Join(page.Hops, " -> "))
	}
	if got := s.Upstream.Requests(prefix + "gina"); len(got) != 0 {
		t.Errorf("the upstream received %d requests of gina, want none", len(got))
	}
}

// TestHydraKeyRotation adds a signing key at Hydra during live sessions: the sessions go on at
// both instances, and new sign-ins at both verify ID tokens signed with the new key.
func TestHydraKeyRotation(t *testing.T) {
	t.Parallel()
	_, h, gs := hydraStack(t, 2, nil)
	prefix := testPrefix(t)
	before := hydraSignedIn(t, gs[1], testbed.HydraFrank, prefix+"before")
	if _, err := h.RotateKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		wantAPIStatus(t, g, prefix+"live", before, http.StatusOK, "the session from before the rotation at "+g.URL)
		after := hydraSignedIn(t, g, testbed.HydraFrank, prefix+"after")
		wantAPIStatus(t, g, prefix+"after-again", after, http.StatusOK, "a session begun after the rotation at "+g.URL)
	}
}

// TestHydraStops stops Hydra: existing sessions keep working, and a new sign-in gets headgate's
// readable "Identity provider unreachable" page with 503.
func TestHydraStops(t *testing.T) {
	t.Parallel()
	s, h, gs := hydraStack(t, 1, nil)
	g := gs[0]
	prefix := testPrefix(t)
	cookie := hydraSignedIn(t, g, testbed.HydraFrank, prefix+"before")
	h.Stop()
	for i := range 5 {
		if page := fetch(t, g, nil, http.MethodGet, prefix+"during", api(cookie)); page.Status != http.StatusOK {
			t.Fatalf("existing session, request %d without hydra: got %d, want 200", i, page.Status)
		}
	}
	// headgate re-checks the provider at most once a second: a sign-in before its next check
	// is still sent to Hydra and ends on a refused connection.
	var page *testbed.Page
	eventually(t, "a new sign-in while hydra is down ends on a page", 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		var err error
		page, err = testbed.Browse(t.Context(), newJar(t), g.URL+prefix+"new", nil, "")
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	checkReadablePage(t, "a new sign-in while hydra is down", page, http.StatusServiceUnavailable)
	if !strings.Contains(page.Body, "Identity provider unreachable") {
		t.Errorf("the page does not say the identity provider is unreachable: %q", page.Body)
	}
	if got := s.Upstream.Requests(prefix + "new"); len(got) != 0 {
		t.Errorf("the upstream received %d requests without a session, want none", len(got))
	}
}
