package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"testing"

	"headgate/internal/testbed"
)

// TestLinkPastHeadscaleListingLimit: with more users than Headscale can send in one listing
// (its REST gateway refuses gRPC messages over 4 MiB, about 39,000 users), sign-ins still link:
// an OIDC user by name and whole provider ID, a CLI user by verified email.
func TestLinkPastHeadscaleListingLimit(t *testing.T) {
	t.Parallel()
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatal("this test needs the sqlite3 command (apt-get install -y sqlite3)")
	}
	s := ownStack(t, testbed.Options{})
	if _, err := s.CreateAccounts(t.Context()); err != nil {
		t.Fatal(err)
	}
	const extra = 45_000
	stmt := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO users (created_at, updated_at, name, display_name, email, provider_identifier, provider)
SELECT datetime('now'), datetime('now'), 'filler' || i, 'Filler ' || i, 'filler' || i || '@example.com',
  '%s/filler' || i, 'oidc' FROM n;`, extra, s.Issuer)
	if out, err := exec.CommandContext(t.Context(), sqlite, s.HeadscaleDB(), stmt).CombinedOutput(); err != nil {
		t.Fatalf("insert %d headscale users: %v: %s", extra, err, out)
	}
	if _, err := s.ListUsers(t.Context()); err == nil {
		t.Fatalf("headscale still lists all %d users: the test no longer shows the limit", extra)
	}
	g := startGateway(t, s, testbed.GatewayOptions{})
	for _, u := range []testbed.User{testbed.Alice, testbed.Bob} {
		page := login(t, g, newJar(t), u, "/scale/"+u.Username)
		if page.Status != http.StatusOK {
			t.Errorf("sign-in of %s past the listing limit: got %d, want 200", u.Email, page.Status)
			continue
		}
		got := s.Upstream.Requests("/scale/" + u.Username)
		if len(got) != 1 || got[0].Header.Get("X-Headscale-User") != u.Username {
			t.Errorf("%s: upstream saw %d requests, X-Headscale-User %q, want %q", u.Email, len(got), header(got), u.Username)
		}
	}
	if page := login(t, g, newJar(t), testbed.Carol, "/scale/carol"); page.Status != http.StatusForbidden {
		t.Errorf("carol (no headscale user) past the listing limit: got %d, want 403", page.Status)
	}
}

func header(reqs []testbed.Request) string {
	if len(reqs) == 0 {
		return ""
	}
	return reqs[0].Header.Get("X-Headscale-User")
}
