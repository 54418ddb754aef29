package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"headgate/internal/testbed"
)

// The real Headplane behind headgate, configured as the README says.

// headplaneGateway is what headgate's part of the README's Headplane recipe sets, with the
// upstream replaced by hp; extra is merged over it.
func headplaneGateway(t *testing.T, hp *testbed.Headplane, extra map[string]any) testbed.GatewayOptions {
	t.Helper()
	recipe := map[string]any{}
	if err := yaml.Unmarshal([]byte(readmeBlock(t, "# gateway.yaml: the keys for Headplane")), &recipe); err != nil {
		t.Fatalf("the README's gateway.yaml block: %v", err)
	}
	opts := testbed.GatewayOptions{Extra: map[string]any{}}
	for key, v := range recipe {
		switch key {
		case "upstream":
			opts.Extra[key] = hp.URL
		case "skip_auth":
			for _, p := range v.([]any) {
				opts.SkipAuth = append(opts.SkipAuth, p.(string))
			}
		default:
			opts.Extra[key] = v
		}
	}
	if !slices.Equal(opts.SkipAuth, testbed.HeadplaneSkipAuth()) {
		t.Errorf("the README's skip_auth: got %q, want %q", opts.SkipAuth, testbed.HeadplaneSkipAuth())
	}
	testbed.MergeConfig(opts.Extra, extra)
	return opts
}

// readmeHeadplane starts a Headplane with the README's config.yaml block and a headgate in
// front of it with the README's gateway.yaml keys (plus extra).
func readmeHeadplane(t *testing.T, s *testbed.Stack, extra map[string]any) (*testbed.Headplane, *testbed.Gateway) {
	t.Helper()
	hp := startHeadplane(t, s, testbed.HeadplaneOptions{Config: readmeBlock(t, "# Headplane's config.yaml: the keys for headgate")})
	return hp, startGateway(t, s, headplaneGateway(t, hp, extra))
}

// headplaneUsers returns hp's accounts by sub.
func headplaneUsers(t *testing.T, hp *testbed.Headplane) map[string]testbed.HeadplaneUser {
	t.Helper()
	users, err := hp.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	bySub := map[string]testbed.HeadplaneUser{}
	for _, u := range users {
		bySub[u.Sub] = u
	}
	return bySub
}

// send sends one request with a body to path at g with jar's cookies and returns the answer
// without following a redirect.
func send(t *testing.T, g *testbed.Gateway, jar http.CookieJar, method, path, contentType, body string, header http.Header) *testbed.Page {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, g.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := testbed.NoRedirectClient(jar, 30*time.Second).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return &testbed.Page{Status: resp.StatusCode, URL: req.URL, Header: resp.Header, Body: string(b),
		Hops: []string{fmt.Sprintf("%d %s %s", resp.StatusCode, method, path)}}
}

// A data request as Headplane's client sends it, and a form post of the same origin.
var (
	dataFetch = http.Header{"Accept": {"*/*"}, "Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Site": {"same-origin"}}
	formPost  = "application/x-www-form-urlencoded"
)

func sameOrigin(g *testbed.Gateway) http.Header {
	return http.Header{"Origin": {g.URL}, "Accept": {"*/*"}, "Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Site": {"same-origin"}}
}

// checkTabRedirect checks that page is the answer React Router's client follows: a new document
// at target.
func checkTabRedirect(t *testing.T, what string, page *testbed.Page, target string) {
	t.Helper()
	if page.Status != http.StatusNoContent || page.Header.Get("X-Remix-Redirect") != target ||
		page.Header.Get("X-Remix-Reload-Document") != "true" {
		t.Errorf("%s: got %d with X-Remix-Redirect %q (reload %q), want 204 to %q", what, page.Status,
			page.Header.Get("X-Remix-Redirect"), page.Header.Get("X-Remix-Reload-Document"), target)
	}
}

// TestHeadplaneRecipeFromREADME runs the README's recipe against the real Headplane: the first
// person is the owner, the next a member, each linked to their own Headscale user at sign-in;
// a form post works; live events stream; assets and the health check need no session; spoofed
// identity headers change nobody.
func TestHeadplaneRecipeFromREADME(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	hp, g := readmeHeadplane(t, s, nil)

	// Bob first: the owner. Owners are sent on to the machines page.
	bob := newJar(t)
	page := login(t, g, bob, testbed.Bob, "/admin/")
	if page.Status != http.StatusOK || page.URL.Path != "/admin/machines" {
		t.Fatalf("owner's sign-in: got %d at %s, want 200 at /admin/machines (%s)", page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
	alice := newJar(t)
	if page := login(t, g, alice, testbed.Alice, "/admin/"); page.Status != http.StatusOK || page.URL.Path != "/admin/" {
		t.Fatalf("member's sign-in: got %d at %s, want 200 at /admin/ (%s)", page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
	users := headplaneUsers(t, hp)
	for _, want := range []testbed.HeadplaneUser{
		{Sub: "proxy:" + accounts.Bob.ID, Name: "bob", Email: testbed.Bob.Email, Role: "owner", HeadscaleUserID: accounts.Bob.ID},
		{Sub: "proxy:" + accounts.Alice.ID, Name: "alice", Email: testbed.Alice.Email, Role: "member", HeadscaleUserID: accounts.Alice.ID},
	} {
		got := users[want.Sub]
		got.ID = ""
		if got != want {
			t.Errorf("headplane account %s: got %+v, want %+v", want.Sub, got, want)
		}
	}
	if len(users) != 2 {
		t.Errorf("headplane accounts: got %d (%v), want 2", len(users), users)
	}
	// A member may not open the machines page; Headplane answers 500 for that.
	if page := fetch(t, g, alice, http.MethodGet, "/admin/machines", http.Header{"Accept": {"text/html"}}); page.Status != http.StatusInternalServerError {
		t.Errorf("member at /admin/machines: got %d, want Headplane's 500", page.Status)
	}

	// A form post: the owner creates a Headscale user on Headplane's users page.
	name := "hp-made-" + strings.ToLower(rand.Text()[:8])
	form := url.Values{"action_id": {"create_user"}, "username": {name}, "email": {name + "@example.com"}}.Encode()
	if page := send(t, g, bob, http.MethodPost, "/admin/users.data", formPost, form, sameOrigin(g)); page.Status != http.StatusOK {
		t.Errorf("create a user through Headplane: got %d %.200q, want 200", page.Status, page.Body)
	}
	if _, err := s.FindUser(t.Context(), func(u testbed.HeadscaleUser) bool { return u.Name == name }); err != nil {
		t.Errorf("Headplane's form post did not create the Headscale user: %v", err)
	}

	// Live events through headgate.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+"/admin/events/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Jar: bob}).Do(req)
	if err != nil {
		t.Fatalf("event stream: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("event stream: got %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	} else if first := firstEvent(resp.Body); !strings.Contains(first, "hello") {
		t.Errorf("event stream: first event %q, want Headplane's hello", first)
	}
	resp.Body.Close()

	// Without a session: the health check and the assets the page loads.
	if page := fetch(t, g, nil, http.MethodGet, "/admin/healthz", nil); page.Status != http.StatusOK {
		t.Errorf("/admin/healthz without a session: got %d, want 200", page.Status)
	}
	asset := regexp.MustCompile(`/admin/assets/[A-Za-z0-9._-]+\.js`).FindString(page.Body)
	if asset == "" {
		t.Fatalf("the owner's page names no asset under /admin/assets/: %.300q", page.Body)
	}
	if page := fetch(t, g, nil, http.MethodGet, asset, nil); page.Status != http.StatusOK || len(page.Body) == 0 {
		t.Errorf("%s without a session: got %d with %d bytes, want 200", asset, page.Status, len(page.Body))
	}
	if got := headplaneUsers(t, hp); len(got) != 2 {
		t.Errorf("after requests without a session: %d accounts, want still 2", len(got))
	}

	// Alice, sending Bob's identity in every spelling, is still Alice: a member.
	spoof := http.Header{"Accept": {"text/html"}}
	for _, name := range []string{"X-Headscale-User-Id", "X-Headscale-User", "X_Headscale_User_Id", "x-headscale-user-id",
		"Remote-User", "X-Forwarded-User", "X-Forwarded-Email"} {
		spoof[name] = []string{accounts.Bob.ID}
	}
	spoof["Connection"] = []string{"X-Headscale-User-Id"}
	if page := fetch(t, g, alice, http.MethodGet, "/admin/machines", spoof); page.Status != http.StatusInternalServerError {
		t.Errorf("member spoofing the owner at /admin/machines: got %d, want Headplane's 500 for a member", page.Status)
	}
	if page := fetch(t, g, nil, http.MethodGet, "/admin/machines", spoof); page.Status != http.StatusFound {
		t.Errorf("nobody spoofing the owner: got %d, want the sign-in redirect", page.Status)
	}
	if page := fetch(t, g, nil, http.MethodGet, "/admin/healthz", spoof); page.Status != http.StatusOK {
		t.Errorf("spoofing on the health check: got %d, want 200", page.Status)
	}
	after := headplaneUsers(t, hp)
	if len(after) != 2 || after["proxy:"+accounts.Bob.ID] != users["proxy:"+accounts.Bob.ID] ||
		after["proxy:"+accounts.Alice.ID].Role != "member" {
		t.Errorf("after spoofing: accounts %+v, want Bob's unchanged and Alice a member", after)
	}
}

// firstEvent reads the first server-sent event of body.
func firstEvent(body io.Reader) string {
	var event []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		if sc.Text() == "" && len(event) > 0 {
			break
		}
		event = append(event, sc.Text())
	}
	return strings.Join(event, "\n")
}

// TestHeadplaneLinkGuard: with the picker (link_at_sign_in off), a person can link their
// account to their own Headscale user only.
func TestHeadplaneLinkGuard(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	hp, g := readmeHeadplane(t, s, map[string]any{"headplane": map[string]any{"link_at_sign_in": false}})

	bob := newJar(t)
	login(t, g, bob, testbed.Bob, "/admin/") // the owner
	dave := newJar(t)
	page := login(t, g, dave, testbed.Dave, "/admin/")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "Link your Headscale account") {
		t.Fatalf("Dave's first page: got %d, want Headplane's picker: %.300q", page.Status, page.Body)
	}
	daveSub := "proxy:" + accounts.Dave.ID
	for _, tt := range []struct{ path, body string }{
		{"/admin/_.data?index", "headscale_user_id=" + accounts.Alice.ID},
		{"/admin/?index", "headscale_user_id=" + accounts.Alice.ID},
		{"/Admin?index", "headscale_user_id=" + accounts.Alice.ID},
		{"/admin/_.data?index", "headscale_user_id=" + accounts.Dave.ID + "&headscale_user_id=" + accounts.Alice.ID},
		{"/admin/_.data?index", "headscale%5Fuser%5Fid=" + accounts.Alice.ID},
	} {
		page := send(t, g, dave, http.MethodPost, tt.path, formPost, tt.body, sameOrigin(g))
		if page.Status != http.StatusForbidden || !strings.Contains(page.Body, "Not your Headscale user") {
			t.Errorf("POST %s %s: got %d %.100q, want 403", tt.path, tt.body, page.Status, page.Body)
		}
		if got := headplaneUsers(t, hp)[daveSub].HeadscaleUserID; got != "" {
			t.Fatalf("POST %s %s linked Dave's account to Headscale user %q", tt.path, tt.body, got)
		}
	}
	// His own user links.
	page = send(t, g, dave, http.MethodPost, "/admin/_.data?index", formPost, "headscale_user_id="+accounts.Dave.ID, sameOrigin(g))
	if page.Status >= 400 {
		t.Errorf("linking his own user: got %d %.200q", page.Status, page.Body)
	}
	if got := headplaneUsers(t, hp)[daveSub].HeadscaleUserID; got != accounts.Dave.ID {
		t.Errorf("Dave's account: linked to %q, want his own %s", got, accounts.Dave.ID)
	}
}

// TestHeadplaneLogoutAndOpenTabs: Headplane's Logout ends the session on every instance and
// sends the tab to the signed-out page; a data request without a session sends the tab to sign
// in and back.
func TestHeadplaneLogoutAndOpenTabs(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	hp, g := readmeHeadplane(t, s, nil)
	other := startGateway(t, s, headplaneGateway(t, hp, nil)) // a second instance on the same Redis

	jar := newJar(t)
	login(t, g, jar, testbed.Bob, "/admin/")
	cookie := sessionCookies(t, g, jar)
	if page := send(t, other, nil, http.MethodGet, "/admin/machines.data?_routes=routes%2Fmachines%2Foverview", "", "",
		mergeHeader(dataFetch, http.Header{"Cookie": {cookie}})); page.Status != http.StatusOK {
		t.Fatalf("data request on the other instance: got %d, want Headplane's 200", page.Status)
	}

	page := send(t, g, jar, http.MethodPost, "/admin/logout.data", formPost, "", sameOrigin(g))
	checkTabRedirect(t, "Logout", page, g.URL+"/oauth2/signed_out")
	if signedOut := fetch(t, g, nil, http.MethodGet, "/oauth2/signed_out", http.Header{"Accept": {"text/html"}}); !strings.Contains(signedOut.Body, "Signed out") {
		t.Errorf("where the tab lands: got %d %.200q, want the signed-out page", signedOut.Status, signedOut.Body)
	}
	// The old cookie in an open tab on the other instance: sign in, then back to the page.
	eventually(t, "the other instance sees the sign-out", 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		page := send(t, other, nil, http.MethodGet, "/admin/machines.data?_routes=x", "", "", mergeHeader(dataFetch, http.Header{"Cookie": {cookie}}))
		return page.Status == http.StatusNoContent, fmt.Sprint(page.Status)
	})
	page = send(t, other, nil, http.MethodGet, "/admin/machines.data?_routes=x", "", "", mergeHeader(dataFetch, http.Header{"Cookie": {cookie}}))
	target := other.URL + "/oauth2/start?rd=" + url.QueryEscape("/admin/machines")
	checkTabRedirect(t, "open tab after the sign-out", page, target)
	if back := login(t, other, newJar(t), testbed.Bob, strings.TrimPrefix(target, other.URL)); back.Status != http.StatusOK || back.URL.Path != "/admin/machines" {
		t.Errorf("the tab's sign-in: got %d at %s, want 200 at /admin/machines", back.Status, back.URL.Path)
	}
}

func mergeHeader(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = v
		}
	}
	return out
}
