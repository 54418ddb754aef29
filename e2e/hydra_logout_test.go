package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestHydraSignOutAtProvider signs out with oidc.sign_out_at_provider: the browser goes to
// Hydra's end-session endpoint, Hydra ends its own session, and the browser comes back to
// headgate's /oauth2/signed_out; signing in again needs the password.
func TestHydraSignOutAtProvider(t *testing.T) {
	t.Parallel()
	_, _, gs := hydraStack(t, 1, map[string]any{"sign_out_at_provider": true})
	g := gs[0]
	prefix := testPrefix(t)
	jar := newJar(t)
	if page := hydraLogin(t, g, jar, testbed.HydraFrank, prefix+"before"); page.Status != http.StatusOK {
		t.Fatalf("sign-in: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	cookie := sessionCookies(t, g, jar)

	page, err := testbed.Browse(t.Context(), jar, g.URL+"/oauth2/sign_out", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.String() != g.URL+"/oauth2/signed_out" || page.Status != http.StatusOK {
		t.Errorf("sign-out ended at %d %s, want 200 %s/oauth2/signed_out (%s)", page.Status, page.URL, g.URL, strings.Join(page.Hops, " -> "))
	}
	if !slices.ContainsFunc(page.Hops, func(hop string) bool { return strings.Contains(hop, "/oauth2/sessions/logout") }) {
		t.Errorf("sign-out did not pass Hydra's end-session endpoint: %s", strings.Join(page.Hops, " -> "))
	}
	wantAPIStatus(t, g, prefix+"after", cookie, http.StatusUnauthorized, "the session after the sign-out")
	// Hydra forgot the person: the next sign-in shows the login app's form again.
	page, err = testbed.Browse(t.Context(), jar, g.URL+prefix+"again", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.Body, `id="hydra-login"`) {
		t.Errorf("the sign-in after signing out at hydra did not ask for the password: ended %d at %s (%s)",
			page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
}

// TestHydraBackchannelLogout ends a login session at Hydra through its admin API: Hydra posts a
// logout token naming its sid (and no sub, and no exp claim, which oidc.logout_token_max_age
// lets in) to the first instance, and the sessions begun in that login session end on both
// instances, and only those.
func TestHydraBackchannelLogout(t *testing.T) {
	t.Parallel()
	_, h, gs := hydraStack(t, 2, map[string]any{"logout_token_max_age": "2m"})
	a, b := gs[0], gs[1]
	prefix := testPrefix(t)
	first := hydraSignedIn(t, b, testbed.HydraFrank, prefix+"first")
	second := hydraSignedIn(t, a, testbed.HydraFrank, prefix+"second")
	sids := h.SessionIDs(testbed.HydraFrank.Subject)
	if len(sids) != 2 {
		t.Fatalf("hydra began %d login sessions for frank (%q), want 2", len(sids), sids)
	}
	for _, g := range gs {
		wantAPIStatus(t, g, prefix+"before", first, http.StatusOK, "the first browser before the logout at "+g.URL)
	}

	if err := h.RevokeSession(t.Context(), sids[0]); err != nil {
		t.Fatal(err)
	}
	const ended = `msg="back-channel logout" sub="" sid=true sessions=1`
	eventually(t, "headgate applies hydra's logout token", 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		return strings.Contains(a.Tail(200), ended), a.Tail(3)
	})
	for _, g := range gs {
		wantAPIStatus(t, g, prefix+"after", first, http.StatusUnauthorized, "the first browser after the logout at "+g.URL)
		wantAPIStatus(t, g, prefix+"other", second, http.StatusOK, "the second browser (another sid) at "+g.URL)
	}
	if strings.Contains(h.Tail(200), "expected HTTP status code 200 or 204") {
		t.Errorf("hydra logged a refused back-channel logout:\n%s", h.Tail(20))
	}
}
