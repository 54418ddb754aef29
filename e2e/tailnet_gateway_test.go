package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// tailnetIdentityTTL is tailnet.identity_ttl in these tests: how long headgate reuses the
// control server's word on a peer.
const tailnetIdentityTTL = 2 * time.Second

// revocationSlack is how much longer than tailnetIdentityTTL a removed or expired device may
// still be let in before a test fails: the time Headscale's change takes to reach headgate's
// node, about a second and a half on an idle machine, with room for a busy one.
const revocationSlack = 25 * time.Second

// tailnetPolicy lets every node reach every other, and alice tag headgate's node and a CI
// runner.
const tailnetPolicy = `{
	"tagOwners": {"tag:headgate": ["alice@"], "tag:ci": ["alice@"]},
	"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
}`

// tailnetStack starts a stack of the test's own with a loopback DERP relay and the tailnet
// build of headgate, with the Headscale user alice and tailnetPolicy; it returns the stack, a
// context bounding the test, and alice.
func tailnetStack(t *testing.T) (*testbed.Stack, context.Context, testbed.HeadscaleUser) {
	t.Helper()
	s := ownStack(t, testbed.Options{DERP: true, Tailnet: true})
	ctx := withTimeout(t, 6*time.Minute)
	alice, err := s.CreateCLIUser(ctx, "alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(ctx, tailnetPolicy); err != nil {
		t.Fatal(err)
	}
	return s, ctx, alice
}

// tailnetGateway starts, in s (a stack with a DERP relay and the tailnet build), a headgate
// instance with opts, joined to the tailnet as "headgate" with a pre-auth key tagged
// tag:headgate, and returns it with its tailnet address once Headscale lists its node.
func tailnetGateway(t *testing.T, ctx context.Context, s *testbed.Stack, ownerID string, opts testbed.GatewayOptions) (*testbed.Gateway, netip.Addr) {
	t.Helper()
	key, err := s.CreatePreAuthKey(ctx, ownerID, testbed.PreAuthKeyOptions{Tags: []string{"tag:headgate"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]any{
		"tailnet": map[string]any{
			"control_url":  s.HeadscaleURL,
			"auth_key":     key,
			"hostname":     "headgate",
			"listen":       ":80",
			"state_dir":    filepath.Join(s.Dir, "headgate-tailnet"),
			"identity_ttl": tailnetIdentityTTL.String(),
		},
	}
	if opts.Extra == nil {
		opts.Extra = map[string]any{}
	}
	testbed.MergeConfig(opts.Extra, keys)
	opts.InProcessStore = true
	g := startGateway(t, s, opts)
	var addr netip.Addr
	eventually(t, "headscale lists headgate's node", time.Minute, 100*time.Millisecond, func() (bool, string) {
		nodes, err := s.ListNodes(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes {
			if n.GivenName == "headgate" || n.Name == "headgate" {
				for _, ip := range n.IPs {
					if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
						addr = a
						return true, ""
					}
				}
			}
		}
		return false, fmt.Sprintf("%d nodes", len(nodes))
	})
	return g, addr
}

// tailnetFetch sends a GET for path to headgate's tailnet address from node, and returns the
// status and body; an error when no answer came within 10 seconds.
func tailnetFetch(ctx context.Context, node *testbed.TailnetNode, gw netip.Addr, path string, header http.Header) (int, string, error) {
	return tailnetFetchWithin(ctx, 10*time.Second, node, gw, path, header)
}

// tailnetFetchWithin is tailnetFetch with a bound of its own.
func tailnetFetchWithin(ctx context.Context, bound time.Duration, node *testbed.TailnetNode, gw netip.Addr, path string, header http.Header) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gw.String()+path, nil)
	if err != nil {
		return 0, "", err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := node.HTTPClient()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if loc := resp.Header.Get("Location"); loc != "" {
		body = append(body, "\nLocation: "+loc...)
	}
	return resp.StatusCode, string(body), err
}

// untilRefused asks headgate at gw for path from node until it no longer lets the request
// through (a refusal, or no answer at all once headgate's node has dropped the peer), logs how
// long that took after what (the change in Headscale just made), and fails the test when it
// took longer than identity_ttl and revocationSlack.
func untilRefused(t *testing.T, ctx context.Context, node *testbed.TailnetNode, gw netip.Addr, path, device, after string) {
	t.Helper()
	var refusal string
	took := eventually(t, device+" is no longer let in", time.Minute, 100*time.Millisecond, func() (bool, string) {
		status, body, err := tailnetFetchWithin(ctx, time.Second, node, gw, path, http.Header{"Accept": {"text/html"}})
		if err == nil && status == http.StatusOK {
			return false, "200"
		}
		refusal = fmt.Sprintf("%d %v", status, err)
		if title, ok := pageTitle(body); ok {
			refusal += " (headgate's page: " + title + ")"
		}
		return true, refusal
	})
	t.Logf("%s was no longer let in %s after %s (identity_ttl %s): %s", device, took.Round(time.Millisecond), after, tailnetIdentityTTL, refusal)
	if took > tailnetIdentityTTL+revocationSlack {
		t.Errorf("%s was let in for %s, want within identity_ttl (%s) and %s", device, took, tailnetIdentityTTL, revocationSlack)
	}
}

// pageTitle returns the <title> of an HTML page.
func pageTitle(body string) (string, bool) {
	_, rest, ok := strings.Cut(body, "<title>")
	if !ok {
		return "", false
	}
	title, _, ok := strings.Cut(rest, "</title>")
	return title, ok
}

// TestTailnetSignIn: headgate joins the tailnet as a node of its own (real Headscale, a
// pre-auth key, every packet through the loopback DERP relay, inside a network namespace with
// loopback alone). A request from alice's device reaches the upstream as alice, with her
// Headscale user ID and none of the identity headers the device sent; a route that requires
// the identity provider sends the device to the public URL; a tagged device is refused; and a
// device removed in Headscale stops being let in within identity_ttl and the time its removal
// takes to reach headgate's node.
func TestTailnetSignIn(t *testing.T) {
	t.Parallel()
	if !inLoopbackNamespace(t) {
		return
	}
	s, ctx, alice := tailnetStack(t)
	g, gw := tailnetGateway(t, ctx, s, alice.ID, testbed.GatewayOptions{Extra: map[string]any{
		"routes": []map[string]any{{"path": "/owner", "upstream": s.Upstream.URL, "from_tailnet": "sign_in"}},
	}})
	laptop := joinTailnet(t, ctx, s, "alice-laptop", alice.ID, testbed.PreAuthKeyOptions{}, gw)

	forged := http.Header{"X-Headscale-User": {"root"}, "X-Headscale-User-Id": {"1000"}, "X-Forwarded-User": {"root"}}
	var (
		status int
		body   string
		err    error
	)
	// headgate's listener may take a moment after its node is listed to accept connections.
	eventually(t, "alice's device reaches the upstream through headgate", time.Minute, 200*time.Millisecond, func() (bool, string) {
		status, body, err = tailnetFetch(ctx, laptop, gw, "/tailnet/hello", forged)
		return err == nil, fmt.Sprint(err)
	})
	if status != http.StatusOK {
		t.Fatalf("alice's device: got %d %q, want 200\n%s", status, body, g.Tail(20))
	}
	reqs := s.Upstream.Requests("/tailnet/hello")
	if len(reqs) != 1 {
		t.Fatalf("upstream received %d requests for /tailnet/hello, want 1", len(reqs))
	}
	for name, want := range map[string]string{
		"X-Headscale-User":    "alice",
		"X-Headscale-User-Id": alice.ID,
		"X-Forwarded-User":    "alice",
	} {
		if got := reqs[0].Header.Values(name); strings.Join(got, ",") != want {
			t.Errorf("upstream %s: got %q, want %q", name, got, want)
		}
	}
	if got := reqs[0].Header.Get("X-Real-Ip"); got != laptop.IPv4().String() {
		t.Errorf("upstream X-Real-IP: got %q, want the device's tailnet address %s", got, laptop.IPv4())
	}

	t.Run("check", func(t *testing.T) {
		// headgate -check asks the control server as a joining node does, and finds the
		// node's state from this start.
		out, err := g.Check(ctx)
		if err != nil {
			t.Fatalf("headgate -check: %v\n%s", err, out)
		}
		for _, want := range []string{"OK    tailnet.control_url: the control server at " + s.HeadscaleURL, "OK    tailnet.state_dir: holds the node's state"} {
			if !strings.Contains(out, want) {
				t.Errorf("headgate -check: got\n%s\nwant a line %q", out, want)
			}
		}
	})

	t.Run("route requiring sign-in", func(t *testing.T) {
		status, body, err := tailnetFetch(ctx, laptop, gw, "/owner/x", http.Header{"Accept": {"text/html"}})
		if err != nil {
			t.Fatal(err)
		}
		if want := "Location: " + g.URL + "/owner/x"; status != http.StatusFound || !strings.Contains(body, want) {
			t.Errorf("got %d %q, want 302 to %s", status, body, g.URL+"/owner/x")
		}
		if n := len(s.Upstream.Requests("/owner/")); n != 0 {
			t.Errorf("upstream received %d requests for /owner/, want none", n)
		}
	})

	t.Run("tagged device", func(t *testing.T) {
		runner := joinTailnet(t, ctx, s, "ci-runner", alice.ID, testbed.PreAuthKeyOptions{Tags: []string{"tag:ci"}}, gw)
		status, body, err := tailnetFetch(ctx, runner, gw, "/tailnet/tagged", http.Header{"Accept": {"text/html"}})
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusForbidden || !strings.Contains(body, "Tagged device") {
			t.Errorf("got %d %q, want 403 Tagged device", status, body)
		}
		if n := len(s.Upstream.Requests("/tailnet/tagged")); n != 0 {
			t.Errorf("upstream received %d requests from the tagged device, want none", n)
		}
	})

	t.Run("expired device", func(t *testing.T) {
		phone := joinTailnet(t, ctx, s, "alice-phone", alice.ID, testbed.PreAuthKeyOptions{}, gw)
		if status, body, err := tailnetFetch(ctx, phone, gw, "/tailnet/phone", nil); err != nil || status != http.StatusOK {
			t.Fatalf("before the expiry: got %d %q, %v; want 200", status, body, err)
		}
		node, err := s.FindNode(ctx, phone.IPv4())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ExpireNode(ctx, node.ID); err != nil {
			t.Fatal(err)
		}
		untilRefused(t, ctx, phone, gw, "/tailnet/expired", "an expired device", "`headscale nodes expire`")
	})

	t.Run("removed device", func(t *testing.T) {
		node, err := s.FindNode(ctx, laptop.IPv4())
		if err != nil {
			t.Fatal(err)
		}
		if status, _, err := tailnetFetch(ctx, laptop, gw, "/tailnet/before", nil); err != nil || status != http.StatusOK {
			t.Fatalf("before the removal: got %d, %v; want 200", status, err)
		}
		if err := s.DeleteNode(ctx, node.ID); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		untilRefused(t, ctx, laptop, gw, "/tailnet/after", "a removed device", "its removal")
		n := len(s.Upstream.Requests("/tailnet/after"))
		if status, _, err := tailnetFetch(ctx, laptop, gw, "/tailnet/after", nil); err == nil && status == http.StatusOK {
			t.Errorf("the removed device was let in again %s after its removal", time.Since(removed).Round(time.Millisecond))
		}
		if got := len(s.Upstream.Requests("/tailnet/after")); got != n {
			t.Errorf("upstream received a request from the removed device after it was refused")
		}
	})
}

// TestBrowserTailnetHeadplane: in Chromium on alice's device (its requests sent through her
// tailnet node), Headplane behind headgate's tailnet listener opens signed in as alice, with
// no identity provider on the way: her Headplane account is made and linked to her Headscale
// user. Headplane's Logout lands on headgate's page saying the device signs her in.
func TestBrowserTailnetHeadplane(t *testing.T) {
	t.Parallel()
	if !testbed.InLoopbackNamespace() {
		// Nothing can be fetched inside the namespace: Node and Headplane are made ready here.
		if err := testbed.PrepareHeadplane(t.Context(), t.Logf); err != nil {
			t.Fatal(err)
		}
	}
	if !inLoopbackNamespace(t) {
		return
	}
	s, ctx, alice := tailnetStack(t)
	hp := startHeadplane(t, s, testbed.HeadplaneOptions{Config: readmeBlock(t, "# Headplane's config.yaml: the keys for headgate")})
	_, gw := tailnetGateway(t, ctx, s, alice.ID, headplaneGateway(t, hp, nil))
	laptop := joinTailnet(t, ctx, s, "alice-laptop", alice.ID, testbed.PreAuthKeyOptions{}, gw)
	proxyURL, stopProxy, err := laptop.ServeProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopProxy)
	b, tab := startBrowserVia(t, proxyURL, s.Dir)
	origin := "http://" + gw.String()

	if err := b.Navigate(tab, origin+"/admin/machines"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "header nav", "Machines"); err != nil {
		t.Fatal(err)
	}
	if got := testbed.WithoutQuery(b.URL(tab)); got != origin+"/admin/machines" {
		t.Errorf("the tab is at %s, want %s (no sign-in on the way)", got, origin+"/admin/machines")
	}
	if u := headplaneUsers(t, hp)["proxy:"+alice.ID]; u.Role != "owner" || u.HeadscaleUserID != alice.ID {
		t.Errorf("alice's Headplane account: got %+v, want the owner, linked to her Headscale user %s", u, alice.ID)
	}
	before := len(b.ConsoleErrors())
	if err := openMenu(b, tab, hpUserMenu, hpLogout); err != nil {
		t.Fatal(err)
	}
	if err := clickSearch(b, tab, hpLogout); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, origin+"/oauth2/sign_out"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "h1", "Signed in by this device"); err != nil {
		t.Fatal(err)
	}
	checkNoTabErrors(t, b, before, "after Logout", "/admin/events/live", "/admin/favicon.ico")
}
