package e2e

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Checks shared by the forward-auth recipe tests (nginx, Caddy): the same promises, whatever
// the proxy in front.

// checkUnlinkedThroughProxy checks that Carol, who has no Headscale user, gets headgate's 403
// page through the proxy at front, at sign-in and for a session refused after it (begun at an
// instance on the same store that lets unlinked people in), and never reaches the upstream.
func checkUnlinkedThroughProxy(t *testing.T, s *Stack, proxy, front, prefix, key string) {
	t.Helper()
	carol, err := BrowserLogin(t.Context(), newJar(t), front+prefix+"carol", Carol.Email, Carol.Password)
	if err != nil {
		t.Fatal(err)
	}
	checkReadablePage(t, "Carol through "+proxy, carol, http.StatusForbidden)
	if !strings.Contains(carol.Body, "No Headscale user") {
		t.Errorf("Carol through %s: got %q, want headgate's page", proxy, carol.Body)
	}
	if n := len(upstreamSaw(prefix + "carol")); n != 0 {
		t.Errorf("Carol reached the upstream %d times", n)
	}
	allow := startGateway(t, s, GatewayOptions{Unlinked: "allow", RedisKeyPrefix: key})
	carolJar := newJar(t)
	login(t, allow, carolJar, Carol, prefix+"carol-allowed")
	carol, err = Fetch(t.Context(), carolJar, http.MethodGet, front+prefix+"carol-session", http.Header{"Accept": {browserAccept}})
	if err != nil {
		t.Fatal(err)
	}
	checkReadablePage(t, "Carol's session through "+proxy, carol, http.StatusForbidden)
	if !strings.Contains(carol.Body, "No Headscale user") {
		t.Errorf("Carol's session through %s: got %q, want headgate's page", proxy, carol.Body)
	}
	if n := len(upstreamSaw(prefix + "carol-session")); n != 0 {
		t.Errorf("Carol's session reached the upstream %d times", n)
	}
}

// checkProxyFailsClosed checks that the proxy, started by start on a port in front of a
// headgate address, answers an error within a bound and sends nothing on when its headgate is
// stopped or hangs. jar holds a session of the stack's store (key).
func checkProxyFailsClosed(t *testing.T, s *Stack, proxy string, jar http.CookieJar, prefix, key string,
	start func(port int, gatewayAddr string) (url string)) {
	t.Helper()
	g2 := startGateway(t, s, GatewayOptions{RedisKeyPrefix: key})
	ports, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	down := start(ports[0], strings.TrimPrefix(g2.URL, "http://"))
	if page, err := Fetch(t.Context(), jar, http.MethodGet, down+prefix+"before-stop", nil); err != nil || page.Status != http.StatusOK {
		t.Fatalf("through the second %s before its headgate stops: got %v, %v, want 200", proxy, page, err)
	}
	g2.Stop()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		var held []net.Conn // accepted and never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	hanging := start(ports[1], hung.Addr().String())
	for _, c := range []struct{ what, url, path string }{
		{"headgate stopped", down, prefix + "down"},
		{"headgate hanging", hanging, prefix + "hung"},
	} {
		began := time.Now()
		page, err := Fetch(t.Context(), jar, http.MethodGet, c.url+c.path, http.Header{"Accept": {browserAccept}})
		took := time.Since(began)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if page.Status == http.StatusOK || page.Status/100 == 3 {
			t.Errorf("%s: got %d, want an error", c.what, page.Status)
		}
		if took > 10*time.Second {
			t.Errorf("%s: answered after %s, want within 10s", c.what, took)
		}
		if n := len(upstreamSaw(c.path)); n != 0 {
			t.Errorf("%s: the upstream received %d requests, want none", c.what, n)
		}
		t.Logf("%s: %s answered %d after %s", c.what, proxy, page.Status, took.Round(time.Millisecond))
	}
}
