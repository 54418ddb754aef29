package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestIdPStops stops Dex on a stack of its own. Existing sessions are unaffected; a new
// sign-in, a sign-in whose callback arrives while Dex is down, and any sign-in at an instance
// that has not yet reached Dex get a readable 503 page. Dex comes back with new signing keys (it keeps them in
// memory): sign-ins work again at both instances without a restart, so a rotated key is picked
// up.
func TestIdPStops(t *testing.T) {
	t.Parallel()
	s := ownStack(t, testbed.Options{Redis: true, Gateway: &testbed.GatewayOptions{}, MaxGateways: 2})
	ctx := t.Context()
	a := s.Gateway
	for _, u := range []testbed.User{testbed.Bob, testbed.Dave} {
		if _, err := s.CreateCLIUser(ctx, u.Username, u.Email); err != nil {
			t.Fatal(err)
		}
	}
	prefix := testPrefix(t)
	keysBefore := dexKeyIDs(t, s)
	cookie := loginCookie(t, a, testbed.Bob, prefix+"before")
	// Dave has signed in at Dex; his browser is on its way back to headgate when Dex stops.
	daveJar := newJar(t)
	callback := callbackURL(t, a, daveJar, testbed.Dave, prefix+"dave")

	s.StopDex()
	for i := range 10 {
		if page := fetch(t, a, nil, http.MethodGet, prefix+"during", api(cookie)); page.Status != http.StatusOK {
			t.Fatalf("existing session, request %d without dex: got %d, want 200", i, page.Status)
		}
	}
	wantAPIStatus(t, a, "/oauth2/auth", cookie, http.StatusAccepted, "existing session at /oauth2/auth without dex")
	t.Run("new sign-in gets a readable page", func(t *testing.T) {
		// The instance has discovered Dex: it must still not send the browser to a provider
		// that does not answer. It re-checks the provider at most once a second, so sign-ins
		// that start before its next check are sent to Dex and end on a refused connection;
		// from then on a sign-in ends on headgate's page.
		var page *testbed.Page
		eventually(t, "a new sign-in while dex is down ends on a page", 10*time.Second, 100*time.Millisecond, func() (bool, string) {
			var err error
			page, err = testbed.Browse(t.Context(), newJar(t), a.URL+prefix+"new", nil, "")
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		checkReadablePage(t, "a new sign-in while dex is down", page, http.StatusServiceUnavailable)
	})
	page, _ := completeLogin(t, daveJar, callback)
	checkReadablePage(t, "callback while dex is down", page, http.StatusServiceUnavailable)
	if got := upstreamSaw(prefix + "dave"); len(got) != 0 {
		t.Errorf("the upstream received %d requests of dave, want none", len(got))
	}
	// An instance started while Dex is down has not discovered it.
	b := startGateway(t, s, testbed.GatewayOptions{})
	page = fetch(t, b, nil, http.MethodGet, "/oauth2/start?rd="+prefix+"b", http.Header{"Accept": {testbed.BrowserAccept}})
	checkReadablePage(t, "sign-in at an instance that never reached dex", page, http.StatusServiceUnavailable)

	if err := s.StartDex(ctx); err != nil {
		t.Fatal(err)
	}
	if keysAfter := dexKeyIDs(t, s); slices.Equal(keysBefore, keysAfter) {
		t.Fatalf("dex signs with the same keys after its restart (%v), so this test cannot show a rotation", keysAfter)
	}
	// The instance that had discovered Dex notices it is back within its next check (a second
	// at most), and verifies tokens signed with the new keys without a restart.
	loginEventually(t, a, testbed.Dave, prefix+"dave-after", 2*time.Second)
	// The instance that failed to discover Dex tries again after a pause of a few seconds.
	loginEventually(t, b, testbed.Dave, prefix+"dave-b", 10*time.Second)
	wantAPIStatus(t, a, prefix+"after", cookie, http.StatusOK, "the session from before the outage")
}

// dexKeyIDs returns the IDs of the keys Dex publishes, sorted.
func dexKeyIDs(t *testing.T, s *testbed.Stack) []string {
	t.Helper()
	page, err := testbed.Fetch(t.Context(), nil, http.MethodGet, s.Issuer+"/keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(page.Body), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("dex's keys: got %d %q (%v), want a key set", page.Status, page.Body, err)
	}
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.KID)
	}
	slices.Sort(ids)
	return ids
}
