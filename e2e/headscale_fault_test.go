package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// slowHeadscale is an HTTP proxy in front of the stack's Headscale that holds every user
// listing for a delay the test sets, and counts the listings: a Headscale that answers slowly.
type slowHeadscale struct {
	URL      string
	delay    atomic.Int64 // nanoseconds
	listings atomic.Int64
}

func newSlowHeadscale(t *testing.T, target string) *slowHeadscale {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &slowHeadscale{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/user" {
			h.listings.Add(1)
			select {
			case <-time.After(time.Duration(h.delay.Load())):
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// callbackURL drives u's sign-in at g up to the redirect back to headgate's callback and
// returns that URL, so that a test can choose when headgate completes the sign-in.
func callbackURL(t *testing.T, g *testbed.Gateway, jar http.CookieJar, u testbed.User, startPath string) string {
	t.Helper()
	page, err := testbed.BrowserLoginUntil(t.Context(), jar, g.URL+startPath, u.Email, u.Password, g.URL+"/oauth2/callback")
	if err != nil {
		t.Fatal(err)
	}
	loc, err := page.URL.Parse(page.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), g.URL+"/oauth2/callback") {
		t.Fatalf("sign-in of %s: ended at %d, not at headgate's callback (%s)", u.Email, page.Status, strings.Join(page.Hops, " -> "))
	}
	return loc.String()
}

// completeLogin follows the redirect to headgate's callback like a browser and returns the page
// the sign-in ends on and how long headgate took.
func completeLogin(t *testing.T, jar http.CookieJar, callback string) (*testbed.Page, time.Duration) {
	t.Helper()
	start := time.Now()
	page, err := testbed.Browse(t.Context(), jar, callback, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return page, time.Since(start)
}

// upstreamUser returns the X-Headscale-User values the upstream received under path.
func upstreamUser(s *testbed.Stack, path string) []string {
	got := s.Upstream.Requests(path)
	if len(got) == 0 {
		return nil
	}
	return got[len(got)-1].Header.Values("X-Headscale-User")
}

// headscaleBound is the headscale.timeout of the instances below, and slack what a request may
// take beyond it on a busy machine (a sign-in's callback also exchanges the code at Dex).
const (
	headscaleBound = time.Second
	slack          = time.Second
)

// loginEventually signs u in at g until the sign-in reaches the upstream, for a peer that has
// just recovered and may still be slow; it fails the test after timeout.
func loginEventually(t *testing.T, g *testbed.Gateway, u testbed.User, path string, timeout time.Duration) {
	t.Helper()
	eventually(t, "sign-in of "+u.Email, timeout, 100*time.Millisecond, func() (bool, string) {
		page, err := g.Login(t.Context(), newJar(t), u.Email, u.Password, path)
		if err != nil {
			return false, err.Error()
		}
		return page.Status == http.StatusOK, strings.Join(page.Hops, " -> ")
	})
}

// TestHeadscaleStops stops Headscale on a stack of its own: links already known keep working
// for existing sessions and for a new sign-in of a linked person, a sign-in that needs
// Headscale gets a readable 503 page within headscale.timeout, and once Headscale is back that
// person's sign-in resolves.
func TestHeadscaleStops(t *testing.T) {
	t.Parallel()
	s := ownStack(t, testbed.Options{Redis: true, MaxGateways: 1})
	ctx := t.Context()
	if _, err := s.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email); err != nil {
		t.Fatal(err)
	}
	dave, err := s.CreateCLIUser(ctx, testbed.Dave.Username, testbed.Dave.Email)
	if err != nil {
		t.Fatal(err)
	}
	// A short list_max_age, so that Dave's sign-in cannot be answered from the listing Bob's made.
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{
		"headscale": map[string]any{"timeout": headscaleBound.String(), "list_max_age": "100ms"},
	}})
	prefix := testPrefix(t)
	cookie := loginCookie(t, g, testbed.Bob, prefix+"before")

	s.StopHeadscale()
	for i := range 10 {
		if page := fetch(t, g, nil, http.MethodGet, prefix+"during", api(cookie)); page.Status != http.StatusOK {
			t.Fatalf("existing session, request %d without headscale: got %d, want 200", i, page.Status)
		}
	}
	if page := login(t, g, newJar(t), testbed.Bob, prefix+"again"); page.Status != http.StatusOK {
		t.Errorf("new sign-in of linked bob without headscale: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
	jar := newJar(t)
	page, took := completeLogin(t, jar, callbackURL(t, g, jar, testbed.Dave, prefix+"dave-during"))
	checkReadablePage(t, "sign-in of dave, not yet linked, without headscale", page, http.StatusServiceUnavailable)
	if took > headscaleBound+slack {
		t.Errorf("the failed sign-in took %s, want at most headscale.timeout %s", took, headscaleBound)
	}
	if got := upstreamSaw(prefix + "dave-during"); len(got) != 0 {
		t.Errorf("the upstream received %d requests of dave, want none", len(got))
	}

	if err := s.StartHeadscale(ctx); err != nil {
		t.Fatal(err)
	}
	loginEventually(t, g, testbed.Dave, prefix+"dave-after", 10*time.Second)
	if got := upstreamUser(s, prefix+"dave-after"); len(got) != 1 || got[0] != dave.Name {
		t.Errorf("dave's X-Headscale-User: got %q, want [%q]", got, dave.Name)
	}
}

// TestHeadscaleSlow puts a Headscale that answers slowly behind an instance of the shared stack:
// existing sessions are answered from their links and a re-check waits at most
// headscale.timeout; concurrent sign-ins that need Headscale share one listing and each gets a
// readable 503 page within the timeout; once Headscale is quick again, new links resolve.
func TestHeadscaleSlow(t *testing.T) {
	t.Parallel()
	sharedStack(t)
	hs := newSlowHeadscale(t, stack.HeadscaleURL)
	const ttl = 2 * time.Second
	// A short list_max_age, so that the sign-ins below cannot be answered from an earlier listing.
	g := startGateway(t, stack, testbed.GatewayOptions{
		TTL: ttl,
		// Links of its own, and new ones on every run: cached ones would spare Headscale.
		RedisKeyPrefix: fmt.Sprintf("headgate-slow-headscale-%d:", runs.Add(1)),
		Extra: map[string]any{
			"headscale": map[string]any{"url": hs.URL, "timeout": headscaleBound.String(), "list_max_age": "100ms"},
		},
	})
	t.Cleanup(g.Stop)
	prefix := testPrefix(t)
	cookies := map[string]string{
		testbed.Alice.Email: loginCookie(t, g, testbed.Alice, prefix+"alice"),
		testbed.Bob.Email:   loginCookie(t, g, testbed.Bob, prefix+"bob"),
	}
	linked := time.Now()

	hs.delay.Store(int64(time.Minute))
	for email, c := range cookies {
		if page := fetch(t, g, nil, http.MethodGet, prefix+"fresh", api(c)); page.Status != http.StatusOK {
			t.Errorf("%s, fresh link, slow headscale: got %d, want 200", email, page.Status)
		}
	}
	// Past link.ttl the link is re-checked: that request waits for Headscale at most
	// headscale.timeout, then the known link answers. The link aging past its ttl in the
	// running binary is what is tested, so this sleep stays: until the ttl has passed.
	time.Sleep(time.Until(linked.Add(ttl + 100*time.Millisecond)))
	for i := range 3 {
		for email, c := range cookies {
			start := time.Now()
			page := fetch(t, g, nil, http.MethodGet, prefix+"stale", api(c))
			if took := time.Since(start); page.Status != http.StatusOK || took > headscaleBound+slack {
				t.Errorf("%s, link past its ttl, slow headscale, request %d: got %d in %s, want 200 within %s",
					email, i, page.Status, took.Round(time.Millisecond), headscaleBound)
			}
		}
	}
	if got := upstreamUser(stack, prefix+"stale"); len(got) != 1 {
		t.Errorf("X-Headscale-User on a stale link: got %q, want one value", got)
	}

	// Sign-ins that need Headscale, completed together: one listing, each answered in time.
	people := []testbed.User{testbed.Carol, testbed.Dave, testbed.Erin}
	jars := make([]http.CookieJar, len(people))
	callbacks := make([]string, len(people))
	for i, u := range people {
		jars[i] = newJar(t)
		callbacks[i] = callbackURL(t, g, jars[i], u, prefix+"burst")
	}
	before := hs.listings.Load()
	var wg sync.WaitGroup
	pages := make([]*testbed.Page, len(people))
	tooks := make([]time.Duration, len(people))
	for i := range people {
		wg.Go(func() { pages[i], tooks[i] = completeLogin(t, jars[i], callbacks[i]) })
	}
	wg.Wait()
	for i, u := range people {
		checkReadablePage(t, u.Email+" signing in while headscale is slow", pages[i], http.StatusServiceUnavailable)
		if tooks[i] > headscaleBound+slack {
			t.Errorf("%s: the sign-in took %s, want at most headscale.timeout %s", u.Email, tooks[i].Round(time.Millisecond), headscaleBound)
		}
	}
	if n := hs.listings.Load() - before; n != 1 {
		t.Errorf("%d concurrent sign-ins sent %d user listings to headscale, want 1", len(people), n)
	}

	hs.delay.Store(0)
	loginEventually(t, g, testbed.Dave, prefix+"dave-after", 10*time.Second)
	if got := upstreamUser(stack, prefix+"dave-after"); len(got) != 1 || got[0] != accounts.Dave.Name {
		t.Errorf("dave's X-Headscale-User: got %q, want [%q]", got, accounts.Dave.Name)
	}
}

// TestHeadscaleUserRenamedOrDeleted renames and then deletes the Headscale user of a signed-in
// person, on a stack of its own: within link.ttl the upstream sees the new name for the
// existing session, and once the user is gone the unlinked policy (deny) applies to it.
func TestHeadscaleUserRenamedOrDeleted(t *testing.T) {
	t.Parallel()
	s := ownStack(t, testbed.Options{Redis: true, MaxGateways: 1})
	ctx := t.Context()
	bob, err := s.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	g := startGateway(t, s, testbed.GatewayOptions{TTL: ttl})
	prefix := testPrefix(t)
	cookie := loginCookie(t, g, testbed.Bob, prefix+"login")
	if got := upstreamUser(s, prefix+"login"); len(got) != 1 || got[0] != bob.Name {
		t.Fatalf("X-Headscale-User at sign-in: got %q, want [%q]", got, bob.Name)
	}

	const newName = "robert"
	if err := s.RenameUser(ctx, bob.ID, newName); err != nil {
		t.Fatal(err)
	}
	n := 0
	// Beyond link.ttl, the re-check's listing may take a while on a busy machine.
	took := eventually(t, "the new name reaches the upstream", ttl+2*time.Second, 50*time.Millisecond, func() (bool, string) {
		n++
		path := prefix + "renamed/" + strconv.Itoa(n)
		page, err := g.Fetch(ctx, nil, http.MethodGet, path, api(cookie))
		if err != nil || page.Status != http.StatusOK {
			return false, "request failed"
		}
		got := upstreamUser(s, path)
		return len(got) == 1 && got[0] == newName, "X-Headscale-User " + strings.Join(got, ",")
	})
	t.Logf("the rename reached the upstream after %s (link.ttl %s)", took.Round(time.Millisecond), ttl)

	if err := s.DeleteUser(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, "the deleted user's session is denied", ttl+2*time.Second, 50*time.Millisecond,
		statusIs(t, g, prefix+"deleted", api(cookie), http.StatusForbidden))
	t.Logf("the deletion took effect after %s", took.Round(time.Millisecond))
	page := fetch(t, g, nil, http.MethodGet, prefix+"deleted-page", http.Header{"Cookie": {cookie}, "Accept": {testbed.BrowserAccept}})
	checkReadablePage(t, "the deleted user's session in a browser", page, http.StatusForbidden)
	wantAPIStatus(t, g, "/oauth2/auth", cookie, http.StatusForbidden, "/oauth2/auth for the deleted user")
	if got := s.Upstream.Requests(prefix + "deleted-page"); len(got) != 0 {
		t.Errorf("the upstream received %d requests after the deletion took effect, want none", len(got))
	}
}
