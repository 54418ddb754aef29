package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// checkIdentity checks that h carries exactly the identity of u, linked to hu: one value for
// each identity header, and no session cookie of the gateway.
func checkIdentity(t *testing.T, h http.Header, u testbed.User, hu testbed.HeadscaleUser) {
	t.Helper()
	want := map[string]string{
		"X-Headscale-User":               hu.Name,
		"X-Headscale-User-Id":            hu.ID,
		"X-Forwarded-User":               u.Username,
		"X-Forwarded-Email":              u.Email,
		"X-Forwarded-Preferred-Username": u.Username,
	}
	for name, value := range want {
		if got := h.Values(name); !slices.Equal(got, []string{value}) {
			t.Errorf("%s: got %q, want [%q]", name, got, value)
		}
	}
	checkNoGatewayCookie(t, h)
}

// checkReachedAs checks that exactly one of requests reached the upstream, carrying the identity
// of u linked to hu.
func checkReachedAs(t *testing.T, requests []testbed.Request, u testbed.User, hu testbed.HeadscaleUser) {
	t.Helper()
	if len(requests) != 1 {
		t.Errorf("the upstream received %d requests, want 1", len(requests))
		return
	}
	checkIdentity(t, requests[0].Header, u, hu)
}

// checkNoneReached checks that no request under prefix reached the upstream.
func checkNoneReached(t *testing.T, prefix string) {
	t.Helper()
	if got := upstreamSaw(prefix); len(got) != 0 {
		t.Errorf("the upstream received %d requests, want none", len(got))
	}
}

// checkNoGatewayCookie checks that no cookie of the gateway is in h.
func checkNoGatewayCookie(t *testing.T, h http.Header) {
	t.Helper()
	for _, line := range h.Values("Cookie") {
		for _, part := range strings.Split(line, ";") {
			if name, _, _ := strings.Cut(strings.TrimSpace(part), "="); strings.HasPrefix(name, "_headgate") {
				t.Errorf("the upstream received the gateway's cookie %s", name)
			}
		}
	}
}

// identityHeaderNames reports every header in h that an upstream could take for identity,
// whatever its spelling.
func identityHeaderNames(h http.Header) []string {
	var names []string
	for name := range h {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if strings.HasPrefix(n, "x-headscale-") || strings.HasPrefix(n, "x-auth-request-") ||
			strings.HasPrefix(n, "x-forwarded-preferred-") || n == "x-forwarded-user" ||
			n == "x-forwarded-email" || n == "remote-user" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// checkDenied checks that page is headgate's 403 naming email and that nothing under prefix
// reached the upstream.
func checkDenied(t *testing.T, page *testbed.Page, email, prefix string) {
	t.Helper()
	if page.Status != http.StatusForbidden {
		t.Errorf("status: got %d, want 403 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	if !strings.Contains(page.Body, email) {
		t.Errorf("the 403 page does not name %s: %q", email, page.Body)
	}
	if got := upstreamSaw(prefix); len(got) != 0 {
		t.Errorf("the upstream received %d requests under %s, want none", len(got), prefix)
	}
}

func TestOIDCUserLinkedByProviderID(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	page := login(t, g, newJar(t), testbed.Alice, prefix+"page?x=1")
	if page.Status != http.StatusOK || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("got %d from %s, want the upstream's 200 (%s)", page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
	if page.URL.RequestURI() != prefix+"page?x=1" {
		t.Errorf("the sign-in returned to %s, want %s", page.URL.RequestURI(), prefix+"page?x=1")
	}
	checkReachedAs(t, upstreamSaw(prefix), testbed.Alice, accounts.Alice)
}

func TestCLIUserLinkedByVerifiedEmail(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	page := login(t, g, newJar(t), testbed.Bob, prefix+"page")
	if page.Status != http.StatusOK || page.Header.Get("X-Upstream") != "echo" {
		t.Fatalf("got %d from %s, want the upstream's 200 (%s)", page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
	checkReachedAs(t, upstreamSaw(prefix), testbed.Bob, accounts.Bob)
}

// TestEmailMatchDisabled runs an instance that matches by provider ID only: Dave, a CLI user
// whom the shared instance links by email, is refused there, while Alice still gets in.
func TestEmailMatchDisabled(t *testing.T) {
	t.Parallel()
	g := extraGateway(t, "provider-id-only", testbed.GatewayOptions{
		Match: []string{"provider_id"},
		// Links cached by the shared instance were found by email: this one must not see them.
		RedisKeyPrefix: "headgate-provider-id-only:",
	})

	prefix := testPrefix(t)
	page := login(t, g, newJar(t), testbed.Dave, prefix+"off/dave")
	checkDenied(t, page, testbed.Dave.Email, prefix+"off/dave")

	page = login(t, g, newJar(t), testbed.Alice, prefix+"off/alice")
	if page.Status != http.StatusOK {
		t.Fatalf("alice: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	checkReachedAs(t, upstreamSaw(prefix+"off/alice"), testbed.Alice, accounts.Alice)

	// The same Dave is linked by email where email matching is on.
	page = login(t, gateway(t), newJar(t), testbed.Dave, prefix+"on/dave")
	if page.Status != http.StatusOK {
		t.Fatalf("dave at the shared instance: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	checkReachedAs(t, upstreamSaw(prefix+"on/dave"), testbed.Dave, accounts.Dave)
}

func TestUnlinkedUserDenied(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	jar := newJar(t)
	page := login(t, g, jar, testbed.Carol, prefix+"page")
	checkDenied(t, page, testbed.Carol.Email, prefix)

	// A refused sign-in leaves no session behind.
	page = fetch(t, g, jar, http.MethodGet, prefix+"api", http.Header{"Accept": {"application/json"}})
	if page.Status != http.StatusUnauthorized {
		t.Errorf("after the refused sign-in: got %d, want 401", page.Status)
	}
	checkNoneReached(t, prefix)
}

// TestUnverifiedEmailNotLinked: Erin's Headscale user has her email, but Dex does not vouch
// for it, so email matching must not link her.
func TestUnverifiedEmailNotLinked(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	page := login(t, g, newJar(t), testbed.Erin, prefix+"page")
	checkDenied(t, page, testbed.Erin.Email, prefix)
}
