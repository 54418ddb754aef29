package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRedisOutage stops Redis under a running headgate, on a stack of its own so that the
// other tests keep theirs: a signed-in person keeps access (the session was proven at
// sign-in), new sign-ins get 503, /ready reports 503, and all recovers when Redis is back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	gateway(t) // the same binary: when the shared instance failed, say why
	ctx := t.Context()
	s, err := Start(ctx, Options{Redis: true, Gateway: &GatewayOptions{}, MaxGateways: 1})
	if err != nil {
		t.Fatalf("start a stack of its own: %v", err)
	}
	t.Cleanup(s.Close)
	g := s.Gateway
	showLogOnFailure(t, g)
	bob, err := s.CreateCLIUser(ctx, Bob.Username, Bob.Email)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testPrefix(t)
	api := http.Header{"Accept": {"application/json"}}

	jar := newJar(t)
	if page := login(t, g, jar, Bob, prefix+"before"); page.Status != http.StatusOK {
		t.Fatalf("sign-in: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}

	s.StopRedis()
	if page := fetch(t, g, nil, http.MethodGet, "/ready", nil); page.Status != http.StatusServiceUnavailable {
		t.Errorf("/ready without redis: got %d, want 503", page.Status)
	}
	if page := fetch(t, g, jar, http.MethodGet, prefix+"during", api); page.Status != http.StatusOK {
		t.Errorf("signed in, without redis: got %d, want 200", page.Status)
	}
	if got := s.Upstream.Requests(prefix + "during"); len(got) != 1 {
		t.Errorf("without redis: the upstream received %d requests, want 1", len(got))
	} else {
		checkIdentity(t, got[0].Header, Bob, bob)
	}
	if page := login(t, g, newJar(t), Bob, prefix+"new-during"); page.Status != http.StatusServiceUnavailable {
		t.Errorf("new sign-in without redis: got %d, want 503 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}

	if err := s.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		page := fetch(t, g, nil, http.MethodGet, "/ready", nil)
		if page.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready after redis came back: got %d, want 200 within 10s", page.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if page := login(t, g, newJar(t), Bob, prefix+"new-after"); page.Status != http.StatusOK {
		t.Errorf("new sign-in after redis came back: got %d, want 200 (%s)", page.Status, strings.Join(page.Hops, " -> "))
	}
}
