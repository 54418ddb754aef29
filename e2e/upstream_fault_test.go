package e2e

import (
	"net/http"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestUpstreamDownOrSlow runs instances of the shared stack in front of an upstream that is too
// slow for upstream_timeout and one that does not listen: a signed-in person gets a readable
// 504 or 502 page in time, never a hang, and an API client a short status.
func TestUpstreamDownOrSlow(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	const timeout = time.Second
	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		extra map[string]any
		path  string
		want  int
	}{
		{"slow", map[string]any{"upstream_timeout": timeout.String()}, "slow?ms=5000", http.StatusGatewayTimeout},
		{"down", map[string]any{"upstream": "http://" + testbed.HostPort(ports[0])}, "page", http.StatusBadGateway},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, s, testbed.GatewayOptions{Extra: c.extra})
			t.Cleanup(g.Stop)
			prefix := testPrefix(t)
			// The sign-in ends on the upstream, which may be down: only the cookie counts here.
			jar := newJar(t)
			login(t, g, jar, testbed.Bob, prefix+"landing")
			cookie := sessionCookies(t, g, jar)
			if cookie == "" {
				t.Fatal("the sign-in left no session cookie")
			}
			for _, accept := range []string{testbed.BrowserAccept, "application/json"} {
				start := time.Now()
				page := fetch(t, g, nil, http.MethodGet, prefix+c.path, http.Header{"Cookie": {cookie}, "Accept": {accept}})
				took := time.Since(start)
				if accept == testbed.BrowserAccept {
					checkReadablePage(t, "browser", page, c.want)
				} else if page.Status != c.want {
					t.Errorf("API client: got %d, want %d", page.Status, c.want)
				}
				if took > timeout+slack {
					t.Errorf("Accept %s: the answer took %s, want at most upstream_timeout %s", accept, took.Round(time.Millisecond), timeout)
				}
			}
		})
	}
}
