package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// TestHeadscaleReleases runs the linking checks against each Headscale release that
// HEADGATE_HEADSCALE_VERSIONS names (versions separated by commas, or "all"; unset: the newest
// alone, which the rest of the suite runs against too), each in a stack of its own: an OIDC
// user made by Headscale's own login is linked by provider ID, CLI users by verified email
// only, the user listing and the lookups by name and by email answer as headgate reads them.
// `make compat` runs every release.
func TestHeadscaleReleases(t *testing.T) {
	versions, err := testbed.ParseHeadscaleVersions(os.Getenv("HEADGATE_HEADSCALE_VERSIONS"))
	if err != nil {
		t.Fatalf("HEADGATE_HEADSCALE_VERSIONS: %v", err)
	}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			checkHeadscaleRelease(t, v)
		})
	}
}

func checkHeadscaleRelease(t *testing.T, version string) {
	s := ownStack(t, testbed.Options{HeadscaleVersion: version, Gateway: &testbed.GatewayOptions{}})
	if s.HeadscaleVersion != version {
		t.Fatalf("the stack runs headscale %s, want %s", s.HeadscaleVersion, version)
	}
	ctx := t.Context()
	a, err := s.CreateAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.InsertedUsers(); len(got) != 0 {
		t.Fatalf("headscale's own oidc login did not create %v: the users were inserted into its database", got)
	}
	if want := s.Issuer + "/" + testbed.Alice.Subject(); a.Alice.ProviderID != want || a.Alice.Provider != "oidc" {
		t.Errorf("alice: provider %q, provider id %q, want oidc, %q", a.Alice.Provider, a.Alice.ProviderID, want)
	}
	checkReleaseListing(t, s, a)

	g := s.Gateway
	for _, c := range []struct {
		u  testbed.User
		hu testbed.HeadscaleUser
	}{{testbed.Alice, a.Alice}, {testbed.Bob, a.Bob}} {
		path := "/release/" + c.u.Username
		page := login(t, g, newJar(t), c.u, path)
		if page.Status != http.StatusOK || page.Header.Get("X-Upstream") != "echo" {
			t.Errorf("%s: got %d from %s, want the upstream's 200 (%s)", c.u.Email, page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
			continue
		}
		got := s.Upstream.Requests(path)
		if len(got) != 1 {
			t.Errorf("%s: the upstream received %d requests, want 1", c.u.Email, len(got))
			continue
		}
		checkIdentity(t, got[0].Header, c.u, c.hu)
	}
	// Carol has no Headscale user; Erin's email is on hers, but Dex does not vouch for it.
	for _, u := range []testbed.User{testbed.Carol, testbed.Erin} {
		checkReleaseDenied(t, s, g, u, "/release/"+u.Username)
	}
	// Dave is a CLI user, linked by email only: an instance matching by provider ID refuses him.
	byProviderID := startGateway(t, s, testbed.GatewayOptions{Match: []string{"provider_id"}})
	checkReleaseDenied(t, s, byProviderID, testbed.Dave, "/release/provider-id-only/dave")
	page := login(t, byProviderID, newJar(t), testbed.Alice, "/release/provider-id-only/alice")
	if got := s.Upstream.Requests("/release/provider-id-only/alice"); page.Status != http.StatusOK || len(got) != 1 {
		t.Errorf("alice at the provider-id-only instance: got %d, %d requests upstream, want 200 and 1", page.Status, len(got))
	} else {
		checkIdentity(t, got[0].Header, testbed.Alice, a.Alice)
	}
	checkReleaseEmptyName(t, s)
	checkReleaseCheck(t, s)
}

// checkReleaseCheck runs `headgate -check` against the release: the API key is accepted, and
// Headscale's version is named, or, for 0.26 (which has no /version), not read, with a warning
// and without failing the check.
func checkReleaseCheck(t *testing.T, s *testbed.Stack) {
	t.Helper()
	out, err := s.Gateway.Check(t.Context())
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	want := []string{"OK    headscale.api_key: accepted"}
	if s.HeadscaleVersion == "0.26.1" {
		want = append(want, "WARN  headscale.url: version not read: get headscale version: headscale answered 404 Not Found")
	} else {
		want = append(want, fmt.Sprintf("OK    headscale.url: Headscale v%s at %s", s.HeadscaleVersion, s.HeadscaleURL))
	}
	for _, line := range want {
		if !strings.Contains(out, line) {
			t.Errorf("headgate -check does not say %q:\n%s", line, out)
		}
	}
}

// checkReleaseEmptyName gives Carol an OIDC user without a name, as Headscale stores one whose
// preferred_username it refused: from 0.28 its API fills the name in (the email first), before
// it sends the name empty and headgate fills it in the same way. Either way Carol is linked by
// provider ID and the upstream sees her email as her Headscale user's name.
func checkReleaseEmptyName(t *testing.T, s *testbed.Stack) {
	t.Helper()
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatal("this test needs the sqlite3 command (apt-get install -y sqlite3)")
	}
	u := testbed.Carol
	stmt := fmt.Sprintf("INSERT INTO users (created_at, updated_at, name, display_name, email, provider_identifier, provider) "+
		"VALUES (datetime('now'), datetime('now'), '', '%s', '%s', '%s/%s', 'oidc');", u.Name, u.Email, s.Issuer, u.Subject())
	if out, err := exec.CommandContext(t.Context(), sqlite, s.HeadscaleDB(), stmt).CombinedOutput(); err != nil {
		t.Fatalf("insert carol's headscale user: %v: %s", err, out)
	}
	hu, err := s.FindUser(t.Context(), func(hu testbed.HeadscaleUser) bool { return hu.Email == u.Email })
	if err != nil {
		t.Fatal(err)
	}
	if before28 := slices.Contains([]string{"0.26.1", "0.27.1"}, s.HeadscaleVersion); before28 != (hu.Name == "") {
		t.Errorf("headscale %s lists carol's user with name %q", s.HeadscaleVersion, hu.Name)
	}
	// A new instance: the first one remembers that Carol had no Headscale user.
	g := startGateway(t, s, testbed.GatewayOptions{})
	path := "/release/empty-name/carol"
	page := login(t, g, newJar(t), u, path)
	got := s.Upstream.Requests(path)
	if page.Status != http.StatusOK || len(got) != 1 {
		t.Fatalf("carol with an unnamed oidc user: got %d, %d requests upstream, want 200 and 1", page.Status, len(got))
	}
	if name, id := got[0].Header.Get("X-Headscale-User"), got[0].Header.Get("X-Headscale-User-Id"); name != u.Email || id != hu.ID {
		t.Errorf("carol with an unnamed oidc user: X-Headscale-User %q, X-Headscale-User-Id %q, want %q, %q", name, id, u.Email, hu.ID)
	}
}

// checkReleaseListing checks the listing and the lookups headgate makes: every user listed once
// with the fields headgate reads, and each found by its name and by its email.
func checkReleaseListing(t *testing.T, s *testbed.Stack, a testbed.Accounts) {
	t.Helper()
	ctx := t.Context()
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatalf("list users: %v", err)
	}
	var ids []string
	for _, u := range users {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	want := []string{a.Alice.ID, a.Bob.ID, a.Dave.ID, a.Erin.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("listed user ids: got %v, want %v (%+v)", ids, want, users)
	}
	for _, c := range []struct {
		hu    testbed.HeadscaleUser
		u     testbed.User
		where string
	}{{a.Alice, testbed.Alice, "oidc"}, {a.Bob, testbed.Bob, ""}, {a.Dave, testbed.Dave, ""}, {a.Erin, testbed.Erin, ""}} {
		if c.hu.Name != c.u.Username || c.hu.Email != c.u.Email || c.hu.Provider != c.where {
			t.Errorf("%s: name %q, email %q, provider %q, want %q, %q, %q",
				c.u.Email, c.hu.Name, c.hu.Email, c.hu.Provider, c.u.Username, c.u.Email, c.where)
		}
		for _, q := range []struct{ field, value string }{{"name", c.u.Username}, {"email", c.u.Email}} {
			found, err := s.FindUsers(ctx, q.field, q.value)
			if err != nil {
				t.Errorf("find users by %s %q: %v", q.field, q.value, err)
				continue
			}
			if len(found) != 1 || found[0] != c.hu {
				t.Errorf("find users by %s %q: got %+v, want [%+v]", q.field, q.value, found, c.hu)
			}
		}
	}
	if found, err := s.FindUsers(ctx, "email", testbed.Carol.Email); err != nil || len(found) != 0 {
		t.Errorf("find users by email %q: got %+v, %v, want none", testbed.Carol.Email, found, err)
	}
}

// checkReleaseDenied checks that u's sign-in at g ends at headgate's 403 naming u and that
// nothing under path reached s's upstream.
func checkReleaseDenied(t *testing.T, s *testbed.Stack, g *testbed.Gateway, u testbed.User, path string) {
	t.Helper()
	page := login(t, g, newJar(t), u, path)
	if page.Status != http.StatusForbidden || !strings.Contains(page.Body, u.Email) {
		t.Errorf("%s: got %d (%s), want headgate's 403 naming the email", u.Email, page.Status, strings.Join(page.Hops, " -> "))
	}
	if got := s.Upstream.Requests(path); len(got) != 0 {
		t.Errorf("%s: the upstream received %d requests, want none", u.Email, len(got))
	}
}
