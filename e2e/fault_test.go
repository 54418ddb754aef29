package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestRedisOutage stops Redis under a running headgate, on a stack of its own so that the
// other tests keep theirs: a signed-in person keeps access (the session was proven at
// sign-in), new sign-ins get 503, /ready reports 503, and all recovers when Redis is back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	gateway(t) // the same binary: when the shared instance failed, say why
	ctx := t.Context()
	s, err := testbed.Start(ctx, testbed.Options{Redis: true, Gateway: &testbed.GatewayOptions{}, MaxGateways: 1})
	if err != nil {
		t.Fatalf("start a stack of its own: %v", err)
	}
	t.Cleanup(s.Close)
	g := s.Gateway
	showLogOnFailure(t, g)
	bob, err := s.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testPrefix(t)
	api := http.Header{"Accept": {"application/json"}}

	jar := signedIn(t, g, testbed.Bob, prefix+"before")

	s.StopRedis()
	if page := fetch(t, g, nil, http.MethodGet, "/ready", nil); page.Status != http.StatusServiceUnavailable {
		t.Errorf("/ready without redis: got %d, want 503", page.Status)
	}
	if page := fetch(t, g, jar, http.MethodGet, prefix+"during", api); page.Status != http.StatusOK {
		t.Errorf("signed in, without redis: got %d, want 200", page.Status)
	}
	checkReachedAs(t, s.Upstream.Requests(prefix+"during"), testbed.Bob, bob)
	if page := login(t, g, newJar(t), testbed.Bob, prefix+"new-during"); page.Status != http.StatusServiceUnavailable {
		t.Errorf("new sign-in without redis: got %d, want 503 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}

	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, g, 10*time.Second)
	if page := login(t, g, newJar(t), testbed.Bob, prefix+"new-after"); page.Status != http.StatusOK {
		t.Errorf("new sign-in after redis came back: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
}

// outcome is one answer to a request sent by a traffic loop.
type outcome struct {
	sent   time.Time
	took   time.Duration
	status int
	err    error
}

// twoInstancesWithBob starts a stack of its own with o and two headgate instances on it, and
// makes Bob a Headscale CLI user.
func twoInstancesWithBob(t *testing.T, o testbed.Options) (s *testbed.Stack, a, b *testbed.Gateway) {
	t.Helper()
	o.Gateway, o.MaxGateways = &testbed.GatewayOptions{}, 2
	s = ownStack(t, o)
	b = startGateway(t, s, testbed.GatewayOptions{})
	if _, err := s.CreateCLIUser(t.Context(), testbed.Bob.Username, testbed.Bob.Email); err != nil {
		t.Fatal(err)
	}
	return s, s.Gateway, b
}

// sendTraffic sends GET path with header to g every interval until stop is closed, and returns
// every answer once it has stopped. sent counts the requests as they are sent, each after its
// outcome's sent time is taken.
func sendTraffic(g *testbed.Gateway, path string, header http.Header, interval time.Duration, sent *atomic.Int64, stop <-chan struct{}) <-chan []outcome {
	done := make(chan []outcome, 1)
	go func() {
		client := testbed.NoRedirectClient(nil, 10*time.Second)
		var got []outcome
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- got
				return
			case <-tick.C:
			}
			o := outcome{sent: time.Now()}
			sent.Add(1)
			req, _ := http.NewRequest(http.MethodGet, g.URL+path, nil)
			req.Header = header.Clone()
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				o.status = resp.StatusCode
			}
			o.err, o.took = err, time.Since(o.sent)
			got = append(got, o)
		}
	}()
	return done
}

// TestRedisStopsMidTraffic stops Redis under continuous traffic of a signed-in person and
// starts it again empty, on a stack of its own. While Redis is down every request of the
// proven session is served and a new sign-in gets a readable 503 page. Redis coming back empty
// has the documented outcome: the session records are gone, so the session ends at its next
// check and the person signs in again; new sign-ins and revocation across instances work again
// without a restart.
func TestRedisStopsMidTraffic(t *testing.T) {
	t.Parallel()
	s, a, b := twoInstancesWithBob(t, testbed.Options{Redis: true})
	ctx := t.Context()
	prefix := testPrefix(t)
	cookie := loginCookie(t, a, testbed.Bob, prefix+"login")

	stop := make(chan struct{})
	var sent atomic.Int64
	results := sendTraffic(a, prefix+"traffic", api(cookie), 5*time.Millisecond, &sent, stop)
	time.Sleep(200 * time.Millisecond) // traffic with Redis up, for comparison

	stopped := time.Now()
	sentBefore := sent.Load()
	s.StopRedis()
	page := login(t, a, newJar(t), testbed.Bob, prefix+"new-during")
	checkReadablePage(t, "new sign-in while redis is down", page, http.StatusServiceUnavailable)
	// The outage lasts two seconds, and on a busy machine longer: until over 100 requests were
	// sent in it (the one being sent as Redis stopped may count on either side), however slowly
	// they go.
	eventually(t, "two seconds and 100 requests without redis", time.Minute, 10*time.Millisecond, func() (bool, string) {
		n, d := sent.Load()-sentBefore, time.Since(stopped)
		return n > 100 && d >= 2*time.Second, fmt.Sprintf("%d requests in %s", n, d.Round(time.Millisecond))
	})
	restarting := time.Now()
	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}

	// Redis is back, empty: the session's record is gone, and the next check ends it.
	took := eventually(t, "the session ends after redis came back empty", 5*time.Second, 20*time.Millisecond,
		statusIs(t, a, prefix+"after", api(cookie), http.StatusUnauthorized))
	t.Logf("the session ended %s after redis answered again", took.Round(time.Millisecond))
	close(stop)
	var before, during, after []outcome
	for _, o := range <-results {
		switch {
		case o.sent.Before(stopped):
			before = append(before, o)
		case o.sent.Before(restarting):
			during = append(during, o)
		default:
			after = append(after, o)
		}
	}
	var slowest time.Duration
	for _, o := range append(before, during...) {
		slowest = max(slowest, o.took)
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("request sent %s after redis stopped: got %d (%v), want 200",
				o.sent.Sub(stopped).Round(time.Millisecond), o.status, o.err)
		}
	}
	if len(during) < 100 {
		t.Errorf("only %d requests were sent while redis was down, want at least 100", len(during))
	}
	t.Logf("%d requests before, %d while redis was down (slowest %s), %d after",
		len(before), len(during), slowest.Round(time.Millisecond), len(after))
	for _, o := range after {
		if o.err != nil || o.status != http.StatusOK && o.status != http.StatusUnauthorized {
			t.Errorf("request after redis came back: got %d (%v), want 200 until the re-check, then 401", o.status, o.err)
		}
	}
	browser := http.Header{"Cookie": {cookie}, "Accept": {testbed.BrowserAccept}}
	if page := fetch(t, a, nil, http.MethodGet, prefix+"after-page", browser); page.Status != http.StatusFound ||
		!strings.HasPrefix(page.Header.Get("Location"), "/oauth2/start?") {
		t.Errorf("the ended session in a browser: got %d to %q, want 302 to /oauth2/start", page.Status, page.Header.Get("Location"))
	}
	wantAPIStatus(t, b, prefix+"after-b", cookie, http.StatusUnauthorized, "the ended session at the other instance")

	// Sign-ins are recorded and sign-outs shared again.
	waitReady(t, a, 5*time.Second)
	fresh := loginCookie(t, a, testbed.Bob, prefix+"new-after")
	if page := fetch(t, b, nil, http.MethodGet, prefix+"new-after-b", api(fresh)); page.Status != http.StatusOK {
		t.Fatalf("the new session at the other instance: got %d, want 200", page.Status)
	}
	signOut(t, a, fresh)
	took = eventually(t, "the sign-out reaches the other instance", time.Second, 10*time.Millisecond,
		statusIs(t, b, prefix+"signed-out-b", api(fresh), http.StatusUnauthorized))
	t.Logf("the sign-out reached the other instance in %s", took.Round(time.Millisecond))
	if keys, err := s.RedisKeys(ctx, "headgate:session:*"); err != nil || len(keys) != 0 {
		t.Errorf("session records left in redis after the sign-out: got %d (%v), want 0", len(keys), err)
	}
}

// TestRedisBlipKeepsSessions restarts a Redis that keeps its data on disk: sessions survive the
// outage on every instance, and a sign-out taken while Redis was down is shared once it
// answers again.
func TestRedisBlipKeepsSessions(t *testing.T) {
	t.Parallel()
	s, a, b := twoInstancesWithBob(t, testbed.Options{Redis: true, RedisPersistence: true})
	ctx := t.Context()
	prefix := testPrefix(t)
	kept := loginCookie(t, a, testbed.Bob, prefix+"kept")
	ended := loginCookie(t, a, testbed.Bob, prefix+"ended")
	for _, g := range []*testbed.Gateway{a, b} {
		for _, c := range []string{kept, ended} {
			if page := fetch(t, g, nil, http.MethodGet, prefix+"before", api(c)); page.Status != http.StatusOK {
				t.Fatalf("before the outage at %s: got %d, want 200", g.URL, page.Status)
			}
		}
	}

	s.StopRedis()
	signOut(t, a, ended)
	if page := fetch(t, a, nil, http.MethodGet, prefix+"during", api(ended)); page.Status != http.StatusUnauthorized {
		t.Errorf("signed out while redis is down, at the same instance: got %d, want 401 at once", page.Status)
	}
	for _, g := range []*testbed.Gateway{a, b} {
		if page := fetch(t, g, nil, http.MethodGet, prefix+"during", api(kept)); page.Status != http.StatusOK {
			t.Errorf("while redis is down at %s: got %d, want 200", g.URL, page.Status)
		}
	}
	// The outage itself lasts a second: its length is the scenario, not a wait for an outcome.
	time.Sleep(time.Second)
	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}

	took := eventually(t, "the sign-out taken during the outage reaches the other instance", 5*time.Second, 20*time.Millisecond,
		statusIs(t, b, prefix+"after", api(ended), http.StatusUnauthorized))
	t.Logf("the pending sign-out reached the other instance %s after redis answered again", took.Round(time.Millisecond))
	// Long enough for both instances to resubscribe and re-check what they know.
	until := time.Now().Add(2 * time.Second)
	for time.Now().Before(until) {
		for _, g := range []*testbed.Gateway{a, b} {
			if page := fetch(t, g, nil, http.MethodGet, prefix+"after", api(kept)); page.Status != http.StatusOK {
				t.Fatalf("the kept session after redis came back, at %s: got %d, want 200", g.URL, page.Status)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A restarted instance knows nothing in process: it finds the session in Redis.
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wantAPIStatus(t, b, prefix+"restarted", kept, http.StatusOK, "the kept session at a restarted instance")
	wantAPIStatus(t, b, prefix+"restarted", ended, http.StatusUnauthorized, "the signed-out session at a restarted instance")
}
