package e2e

import (
	"net/http"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestTwoInstancesSignOutWithinOneSecond signs in at one instance of the shared stack, proves
// the session at both (so each holds it in its local view), signs out at one and measures how
// long the other keeps serving it: under one second, in both directions.
func TestTwoInstancesSignOutWithinOneSecond(t *testing.T) {
	t.Parallel()
	a := gateway(t)
	b := extraGateway(t, "second", testbed.GatewayOptions{})
	prefix := testPrefix(t)
	for _, c := range []struct {
		name          string
		signIn, other *testbed.Gateway
		u             testbed.User
	}{
		{"sign-out at the second", a, b, testbed.Alice},
		{"sign-out at the first", b, a, testbed.Bob},
	} {
		t.Run(c.name, func(t *testing.T) {
			cookie := loginCookie(t, c.signIn, c.u, prefix+"login")
			for _, g := range []*testbed.Gateway{a, b} {
				if page := fetch(t, g, nil, http.MethodGet, prefix+"before", api(cookie)); page.Status != http.StatusOK {
					t.Fatalf("before the sign-out at %s: got %d, want 200", g.URL, page.Status)
				}
			}
			signedOut := time.Now()
			signOut(t, c.other, cookie)
			took := eventually(t, "the session ends at the instance that signed it in", time.Second, 5*time.Millisecond,
				statusIs(t, c.signIn, prefix+"after", api(cookie), http.StatusUnauthorized))
			t.Logf("the session ended at the other instance %s after the sign-out was sent (%s after it was answered)",
				time.Since(signedOut).Round(time.Millisecond), took.Round(time.Millisecond))
			if d := time.Since(signedOut); d >= time.Second {
				t.Errorf("the session ended %s after the sign-out was sent, want under 1s", d)
			}
		})
	}
}
