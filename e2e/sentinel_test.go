package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestSentinelFailover runs two headgate instances on a Redis Sentinel deployment (a primary, a
// replica and three sentinels) and kills the primary under sign-ins and proxied traffic. The
// proven session is served throughout; sign-outs taken before and during the failover are
// refused on every instance after it, including one started afterwards that knows nothing in
// process; new sign-ins work once the replica is promoted. It prints how long recovery took.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := ownStack(t, testbed.Options{MaxGateways: 3})
	sen, err := testbed.StartSentinel(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sen.Close)
	onSentinel := testbed.GatewayOptions{Extra: map[string]any{"redis": map[string]any{"url": sen.URL}}}
	a, b := startGateway(t, s, onSentinel), startGateway(t, s, onSentinel)
	if _, err := s.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email); err != nil {
		t.Fatal(err)
	}
	waitReady(t, a, 10*time.Second)
	prefix := testPrefix(t)

	kept := loginCookie(t, a, testbed.Bob, prefix+"kept")
	endedBefore := loginCookie(t, b, testbed.Bob, prefix+"ended-before")
	endedAtA := loginCookie(t, a, testbed.Bob, prefix+"ended-at-a")
	endedAtB := loginCookie(t, b, testbed.Bob, prefix+"ended-at-b")
	// Each instance proves every session, so each holds them all in its local view.
	for _, g := range []*testbed.Gateway{a, b} {
		for _, c := range []string{kept, endedBefore, endedAtA, endedAtB} {
			wantAPIStatus(t, g, prefix+"before", c, http.StatusOK, "a session before the failover at "+g.URL)
		}
	}
	signOut(t, a, endedBefore)
	for _, g := range []*testbed.Gateway{a, b} {
		eventually(t, "the sign-out before the failover reaches "+g.URL, time.Second, 10*time.Millisecond,
			statusIs(t, g, prefix+"signed-out", api(endedBefore), http.StatusUnauthorized))
	}
	// Replication is asynchronous: a write the primary answered but had not yet sent to its
	// replica dies with it, whatever the client. Waiting here makes the test prove what
	// headgate does, not what Redis may lose.
	if err := sen.WaitReplicated(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var sentA, sentB atomic.Int64
	trafficA := sendTraffic(a, prefix+"traffic", api(kept), 10*time.Millisecond, &sentA, stop)
	trafficB := sendTraffic(b, prefix+"traffic", api(kept), 10*time.Millisecond, &sentB, stop)
	time.Sleep(200 * time.Millisecond) // traffic with the primary up, for comparison

	killed := time.Now()
	old, err := sen.KillPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signOut(t, a, endedAtA)
	signOut(t, b, endedAtB)
	wantAPIStatus(t, a, prefix+"during", endedAtA, http.StatusUnauthorized, "signed out at the same instance during the failover")
	wantAPIStatus(t, b, prefix+"during", endedAtB, http.StatusUnauthorized, "signed out at the same instance during the failover")
	page := login(t, a, newJar(t), testbed.Bob, prefix+"new-during")
	if page.Status != http.StatusOK {
		checkReadablePage(t, "a sign-in while the primary is gone", page, http.StatusServiceUnavailable)
	}
	t.Logf("a sign-in %s after the primary was killed: %d", time.Since(killed).Round(time.Millisecond), page.Status)

	// Recovery: the sentinels promote the replica, a new sign-in works, and each sign-out taken
	// during the failover reaches the other instance. Each is timed from the kill.
	var promoted, signedIn, shared time.Duration
	var fresh string
	deadline := killed.Add(time.Minute)
	for promoted == 0 || signedIn == 0 || shared == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within a minute of the kill: promoted after %s, sign-in after %s, sign-outs shared after %s (0: not yet)",
				promoted, signedIn, shared)
		}
		if promoted == 0 {
			if primary, err := sen.Primary(ctx); err == nil && primary != old {
				promoted = time.Since(killed)
			}
		}
		if shared == 0 && refused(t, b, prefix+"shared", endedAtA) && refused(t, a, prefix+"shared", endedAtB) {
			shared = time.Since(killed)
		}
		if signedIn == 0 {
			jar := newJar(t)
			if page, err := a.Login(ctx, jar, testbed.Bob.Email, testbed.Bob.Password, prefix+"new-after"); err == nil && page.Status == http.StatusOK {
				signedIn, fresh = time.Since(killed), sessionCookies(t, a, jar)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := max(signedIn, shared)
	t.Logf("primary %s killed: replica promoted after %s, a new sign-in worked after %s, the sign-outs taken during the failover reached the other instance after %s: recovered in %s",
		old, promoted.Round(time.Millisecond), signedIn.Round(time.Millisecond), shared.Round(time.Millisecond), recovered.Round(time.Millisecond))

	// The new session is shared, and so is its sign-out, within the usual second.
	wantAPIStatus(t, b, prefix+"fresh", fresh, http.StatusOK, "the session signed in after the failover, at the other instance")
	signOut(t, b, fresh)
	took := eventually(t, "a sign-out after the failover reaches the other instance", time.Second, 10*time.Millisecond,
		statusIs(t, a, prefix+"fresh-signed-out", api(fresh), http.StatusUnauthorized))
	t.Logf("a sign-out after the failover reached the other instance in %s", took.Round(time.Millisecond))

	// The proven session is served for a while after recovery too: long enough for both
	// instances to have subscribed again and looked it up on the new primary.
	time.Sleep(2 * time.Second)
	close(stop)
	checkFailoverTraffic(t, "a", <-trafficA, killed, recovered)
	checkFailoverTraffic(t, "b", <-trafficB, killed, recovered)

	// No session comes back: the records are gone from the new primary, as an instance that
	// knows nothing in process finds.
	c := startGateway(t, s, onSentinel)
	for _, g := range []*testbed.Gateway{a, b, c} {
		wantAPIStatus(t, g, prefix+"after", kept, http.StatusOK, "the kept session after the failover at "+g.URL)
		for _, ended := range []string{endedBefore, endedAtA, endedAtB, fresh} {
			wantAPIStatus(t, g, prefix+"after", ended, http.StatusUnauthorized, "a signed-out session after the failover at "+g.URL)
		}
	}
}

// refused reports whether g answers 401 to an API client presenting cookie at path.
func refused(t *testing.T, g *testbed.Gateway, path, cookie string) bool {
	page, err := g.Fetch(t.Context(), nil, http.MethodGet, path, api(cookie))
	return err == nil && page.Status == http.StatusUnauthorized
}

// checkFailoverTraffic checks that every request of a proven session sent to the instance
// named name was served, before, during and after the failover that began at killed and was
// over recovered later, and logs how many there were in each phase.
func checkFailoverTraffic(t *testing.T, name string, got []outcome, killed time.Time, recovered time.Duration) {
	t.Helper()
	var counts [3]int
	var slowest time.Duration
	for _, o := range got {
		phase := 0
		switch {
		case o.sent.After(killed.Add(recovered)):
			phase = 2
		case o.sent.After(killed):
			phase = 1
			slowest = max(slowest, o.took)
		}
		counts[phase]++
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("instance %s: the proven session's request sent %s after the kill: got %d (%v), want 200",
				name, o.sent.Sub(killed).Round(time.Millisecond), o.status, o.err)
		}
	}
	if counts[1] == 0 || counts[2] == 0 {
		t.Errorf("instance %s: %s requests, want some during the failover and some after", name, phaseCounts(counts))
	}
	t.Logf("instance %s served the proven session: %s (slowest during: %s)", name, phaseCounts(counts), slowest.Round(time.Millisecond))
}

func phaseCounts(c [3]int) string {
	return strings.Join([]string{
		fmt.Sprintf("%d before the kill", c[0]),
		fmt.Sprintf("%d during the failover", c[1]),
		fmt.Sprintf("%d after it", c[2]),
	}, ", ")
}
