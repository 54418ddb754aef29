package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tailnetPeer stands in for the control server's word on the one peer a test's requests come
// from (127.0.0.1): a WhoIs that answers with device or err, and counts its calls.
type tailnetPeer struct {
	mu     sync.Mutex
	device Device
	err    error
	calls  atomic.Int64
}

func (p *tailnetPeer) whois(_ context.Context, remoteAddr string) (Device, error) {
	p.calls.Add(1)
	if !strings.HasPrefix(remoteAddr, "127.0.0.1:") {
		return Device{}, fmt.Errorf("whois %s: %w", remoteAddr, ErrUnknownDevice)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.device, p.err
}

func (p *tailnetPeer) set(d Device, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.device, p.err = d, err
}

const testIdentityTTL = 10 * time.Second

// tailnetServer serves e's gateway's tailnet handler on a listener of its own, its peer
// answering as alice's laptop.
func (e *testEnv) tailnetServer(t *testing.T) (*httptest.Server, *tailnetPeer) {
	t.Helper()
	peer := &tailnetPeer{device: Device{NodeID: "7", Name: "alice-laptop", UserID: "1"}}
	srv := httptest.NewServer(e.gw.newTailnetHandler(peer.whois, testIdentityTTL, "http://headscale.example"))
	t.Cleanup(srv.Close)
	return srv, peer
}

// tailnetGet sends a GET to the tailnet server without following redirects.
func tailnetGet(t *testing.T, srv *httptest.Server, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

// TestTailnetSignsInByDevice: a request on the tailnet listener reaches the upstream as the
// Headscale user who owns the device, with the headers a sign-in's request carries and none
// the client sent under those names; the control server is asked once per peer and TTL.
func TestTailnetSignsInByDevice(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	srv, peer := e.tailnetServer(t)

	forged := http.Header{"X-Headscale-User": {"root"}, "X-Headscale-User-Id": {"99"}, "X-Forwarded-Email": {"root@example.com"}}
	for i := range 3 {
		resp, body := tailnetGet(t, srv, "/admin/machines", forged)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: got %d %q, want 200", i, resp.StatusCode, body)
		}
		if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("request %d: the tailnet listener set cookies %q", i, c)
		}
	}
	up := e.upstream.last()
	for name, want := range map[string]string{
		"X-Headscale-User":    "alice",
		"X-Headscale-User-Id": "1",
		"X-Forwarded-User":    "alice",
		// A Headscale user's email is not an identity provider's verified claim.
		"X-Forwarded-Email": "",
	} {
		if got := up.Header.Values(name); strings.Join(got, ",") != want {
			t.Errorf("upstream %s: got %q, want %q", name, got, want)
		}
	}
	if got := peer.calls.Load(); got != 1 {
		t.Errorf("whois calls for 3 requests within the TTL: got %d, want 1", got)
	}
	e.clock.Advance(testIdentityTTL)
	tailnetGet(t, srv, "/", nil)
	if got := peer.calls.Load(); got != 2 {
		t.Errorf("whois calls after the TTL: got %d, want 2", got)
	}
}

// TestTailnetAssertionAndGroups: a device's owner gets the Headscale groups and the signed
// assertion a signed-in person gets, the assertion's subject naming the device, and access
// rules on Headscale groups let them in.
func TestTailnetAssertionAndGroups(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.edit = func(c *Config) {
			c.Assertion.Header = "X-Headgate-Assertion"
			c.Access = AccessConfig{HeadscaleGroups: []string{"admins"}}
		}
	})
	withAlice(e)
	e.headscale.set(func(h *headscaleDouble) { h.policy = `{"groups": {"group:admins": ["alice@"]}}` })
	if err := e.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, _ := e.tailnetServer(t)
	forged := http.Header{"X-Headgate-Assertion": {"forged"}, "X-Headscale-Groups": {"group:root"}}
	if resp, body := tailnetGet(t, srv, "/app", forged); resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %q, want 200", resp.StatusCode, body)
	}
	up := e.upstream.last().Header
	if got := up.Values("X-Headscale-Groups"); strings.Join(got, ",") != "group:admins" {
		t.Errorf("X-Headscale-Groups: got %q, want [group:admins]", got)
	}
	tokens := up.Values("X-Headgate-Assertion")
	if len(tokens) != 1 || tokens[0] == "forged" {
		t.Fatalf("assertion: got %q", tokens)
	}
	_, idt := verifyAssertion(t, e, "default", tokens[0])
	var claims struct {
		Email           string `json:"email"`
		HeadscaleUser   string `json:"headscale_user"`
		HeadscaleUserID string `json:"headscale_user_id"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Subject != "device:7" || claims.HeadscaleUser != "alice" || claims.HeadscaleUserID != "1" || claims.Email != "" {
		t.Errorf("claims: sub %q, %+v, %v; want device:7, alice (1), no email", idt.Subject, claims, err)
	}
}

// TestTailnetRemovedDevice: a device the control server stops knowing is let in until its
// answer is TTL old, then refused. (A deleted owner is refused once their link is TTL old:
// see TestTailnetRefusals and the linker's TestResolveUser.)
func TestTailnetRemovedDevice(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	srv, peer := e.tailnetServer(t)
	if resp, body := tailnetGet(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before removal: got %d %q", resp.StatusCode, body)
	}
	peer.set(Device{}, fmt.Errorf("whois: %w", ErrUnknownDevice))
	if resp, _ := tailnetGet(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("removed, within the identity TTL: got %d, want 200", resp.StatusCode)
	}
	e.clock.Advance(testIdentityTTL)
	resp, body := tailnetGet(t, srv, "/", http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Unknown device") {
		t.Errorf("removed, after the identity TTL: got %d %q, want 403 Unknown device", resp.StatusCode, body)
	}

}

// TestTailnetRefusals: every device headgate cannot sign in gets a page that names the cause,
// and nothing reaches the upstream.
func TestTailnetRefusals(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	e.headscale.addUser("2", "carol", "", "")
	e.headscale.addUser("3", "carol", "", "")
	tests := []struct {
		name       string
		device     Device
		err        error
		wantStatus int
		wantText   string
	}{
		{"unknown", Device{}, fmt.Errorf("whois: %w", ErrUnknownDevice), http.StatusForbidden, "Unknown device"},
		{"whois fails", Device{}, errors.New("local api: connection refused"), http.StatusServiceUnavailable, "Tailnet unavailable"},
		{"tagged", Device{NodeID: "8", Name: "ci-runner", Tags: []string{"tag:ci"}}, nil, http.StatusForbidden, "Tagged device"},
		{"no user", Device{NodeID: "8", Name: "ci-runner"}, nil, http.StatusForbidden, "Tagged device"},
		{"expired", Device{NodeID: "7", Name: "alice-laptop", UserID: "1", KeyExpiry: e.clock.Now().Add(-time.Second)}, nil, http.StatusForbidden, "Device key expired"},
		{"user not in headscale", Device{NodeID: "9", Name: "old", UserID: "42"}, nil, http.StatusForbidden, "No Headscale user"},
		{"name shared", Device{NodeID: "10", Name: "carols", UserID: "2"}, nil, http.StatusForbidden, "carol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, peer := e.tailnetServer(t)
			peer.set(tt.device, tt.err)
			before := e.upstream.count()
			resp, body := tailnetGet(t, srv, "/admin/", http.Header{"Accept": {"text/html"}})
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantText) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, body, tt.wantStatus, tt.wantText)
			}
			if e.upstream.count() != before {
				t.Error("the upstream received the refused request")
			}
		})
	}
	// A key that expires later is let in until then.
	srv, peer := e.tailnetServer(t)
	peer.set(Device{NodeID: "7", Name: "alice-laptop", UserID: "1", KeyExpiry: e.clock.Now().Add(time.Second)}, nil)
	if resp, body := tailnetGet(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("key expiring in a second: got %d %q, want 200", resp.StatusCode, body)
	}
	e.clock.Advance(time.Second)
	if resp, _ := tailnetGet(t, srv, "/", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("key expired since (answer still within the identity TTL): got %d, want 403", resp.StatusCode)
	}
}

// TestTailnetSignInRoute: a route whose from_tailnet is sign_in sends a tailnet request to
// the same page at the public URL, where the identity provider's sign-in happens; a session
// cookie sent to the tailnet listener proves nothing there, and access rules apply to the
// device's owner as to a signed-in person.
func TestTailnetSignInRoute(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.headplane = "/admin"
		o.edit = func(c *Config) {
			c.FromTailnet = "sign_in"
			c.Routes = []RouteConfig{
				{Path: "/grafana", Upstream: c.Upstream},
				{Path: "/ops", Upstream: c.Upstream, Access: AccessConfig{HeadscaleUsers: []string{"bob"}}},
			}
		}
	})
	withAlice(e)
	_, cookie := e.signedIn(t)
	srv, peer := e.tailnetServer(t)

	resp, _ := tailnetGet(t, srv, "/admin/users?x=1", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}, "Cookie": {cookie.String()}})
	if want := e.srv.URL + "/admin/users?x=1"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("page load: got %d to %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, _ = tailnetGet(t, srv, "/admin/users.data", nil)
	checkRemixRedirect(t, resp, e.srv.URL+"/admin/users")
	resp, body := tailnetGet(t, srv, "/admin/api", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, e.srv.URL+"/admin/api") {
		t.Errorf("API request: got %d %q, want 401 naming the public URL", resp.StatusCode, body)
	}

	// Another route lets the device in; the session cookie of the public listener is
	// neither read nor passed on.
	peer.set(Device{}, fmt.Errorf("whois: %w", ErrUnknownDevice))
	if resp, _ := tailnetGet(t, srv, "/grafana/", http.Header{"Cookie": {cookie.String()}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("unknown device with a session cookie: got %d, want 403", resp.StatusCode)
	}
	peer.set(Device{NodeID: "7", Name: "alice-laptop", UserID: "1"}, nil)
	e.clock.Advance(testIdentityTTL)
	if resp, body := tailnetGet(t, srv, "/grafana/", http.Header{"Cookie": {cookie.String()}}); resp.StatusCode != http.StatusOK {
		t.Errorf("device route: got %d %q, want 200", resp.StatusCode, body)
	}
	if c := e.upstream.last().Header.Get("Cookie"); strings.Contains(c, "_headgate") {
		t.Errorf("upstream received headgate's cookie from the tailnet listener: %q", c)
	}
	if resp, body := tailnetGet(t, srv, "/ops/", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("route alice may not use: got %d %q, want 403", resp.StatusCode, body)
	}
}

// TestTailnetOwnPaths: headgate's sign-in and forward-auth paths are the public listener's;
// sign-out says there is nothing to end, and Headplane's Logout reloads onto that page.
func TestTailnetOwnPaths(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.headplane = "/admin" })
	withAlice(e)
	srv, _ := e.tailnetServer(t)
	for _, path := range []string{"/oauth2/start?rd=/admin/", "/oauth2/auth", "/oauth2/callback?code=x&state=y"} {
		resp, body := tailnetGet(t, srv, path, http.Header{"Accept": {"text/html"}})
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, e.srv.URL) {
			t.Errorf("%s: got %d %q, want 404 naming the public URL", path, resp.StatusCode, body)
		}
	}
	resp, body := tailnetGet(t, srv, "/oauth2/sign_out", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in by this device") {
		t.Errorf("sign-out: got %d %q, want 200 Signed in by this device", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/admin/logout.data", strings.NewReader(""))
	resp = e.do(t, req, nil)
	checkRemixRedirect(t, resp, srv.URL+"/oauth2/sign_out")
	if resp, _ := tailnetGet(t, srv, "/ping", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/ping: got %d, want 200", resp.StatusCode)
	}
}

// TestTailnetConfig: the tailnet section is checked key by key.
func TestTailnetConfig(t *testing.T) {
	valid := TailnetConfig{ControlURL: "https://headscale.example.com", StateDir: "/var/lib/headgate/tailnet"}
	tests := []struct {
		name string
		edit func(c *TailnetConfig)
		want []string
	}{
		{"off", func(c *TailnetConfig) { *c = TailnetConfig{} }, nil},
		{"keys without control_url", func(c *TailnetConfig) { *c = TailnetConfig{StateDir: "/x"} }, []string{"tailnet.control_url: required"}},
		{"bad control_url", func(c *TailnetConfig) { c.ControlURL = "headscale:8080" }, []string{"tailnet.control_url: must be an http or https URL"}},
		{"both keys", func(c *TailnetConfig) { c.AuthKey, c.AuthKeyFile = "k", "/f" }, []string{"tailnet.auth_key: set either"}},
		{"hostname", func(c *TailnetConfig) { c.Hostname = "head_gate" }, []string{"tailnet.hostname: must be 1 to 63"}},
		{"listen", func(c *TailnetConfig) { c.Listen = "100.64.0.1:80" }, []string{"tailnet.listen: must be a port"}},
		{"listen port", func(c *TailnetConfig) { c.Listen = ":65536" }, []string{"tailnet.listen: must be a port"}},
		{"state_dir", func(c *TailnetConfig) { c.StateDir = "" }, []string{"tailnet.state_dir: required"}},
		{"identity_ttl", func(c *TailnetConfig) { c.IdentityTTL = time.Hour }, []string{"tailnet.identity_ttl: must be between 0 and 5m0s"}},
	}
	for _, tt := range tests {
		c := valid
		tt.edit(&c)
		c.setDefaults()
		var got []string
		for _, err := range c.validate() {
			got = append(got, err.Error())
		}
		if !tailnetBuilt && c.Enabled() {
			tt.want = append([]string{"tailnet.control_url: this headgate was built without the tailnet listener"}, tt.want...)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tt.want[i]) {
				t.Errorf("%s: got %q, want it to start with %q", tt.name, got[i], tt.want[i])
			}
		}
	}
	c := valid
	c.setDefaults()
	if c.Hostname != "headgate" || c.Listen != ":80" || c.IdentityTTL != 10*time.Second {
		t.Errorf("defaults: got %q %q %v, want headgate :80 10s", c.Hostname, c.Listen, c.IdentityTTL)
	}
	bad := RouteConfig{Upstream: "http://up.example", FromTailnet: "yes"}
	if errs := bad.validate("routes[0]."); len(errs) != 1 || !strings.Contains(errs[0].Error(), "routes[0].from_tailnet: must be device or sign_in") {
		t.Errorf("from_tailnet: got %v", errs)
	}
}

// TestTailnetStreamEndsWithItsDevice: an event stream opened by a device goes on while the
// device stands, and ends at the first check after the control server stops knowing it and
// the device's answer is identity_ttl old.
func TestTailnetStreamEndsWithItsDevice(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.upstream = streamingUpstream() })
	withAlice(e)
	srv, peer := e.tailnetServer(t)
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: got %d, want 200", resp.StatusCode)
	}
	events := bufio.NewReader(resp.Body)
	nextEvent(t, "the device's event stream", events)
	for range 2 {
		e.clock.Advance(e.gw.timing.StreamCheck)
	}
	nextEvent(t, "the device's event stream, checked", events)

	peer.set(Device{}, fmt.Errorf("whois: %w", ErrUnknownDevice))
	e.clock.Advance(e.gw.timing.StreamCheck)
	nextEvent(t, "the removed device's event stream, within the identity TTL", events)
	e.clock.Advance(testIdentityTTL)
	e.clock.Advance(e.gw.timing.StreamCheck)
	if took, err := untilEnd(t, "the removed device's event stream", events, 10*time.Second); err != nil {
		t.Errorf("event stream ended with %v after %v, want a clean end", err, took)
	}
}
