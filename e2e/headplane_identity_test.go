package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// Nobody reaches Headplane as somebody else: not through a shared Headscale user name, not
// after the accounts move from the name to the ID, not through a reused Headscale ID.

// TestHeadplaneNoTakeoverBySharedName: a second Headscale user named like Alice's, linked to
// Carol by email, must not make Carol Alice's Headplane account, even with Headplane keyed on
// the name (the old recipe). A session that began before the duplicate appeared is refused
// within link.ttl.
func TestHeadplaneNoTakeoverBySharedName(t *testing.T) {
	t.Parallel()
	s := ownStack(t, testbed.Options{})
	a, err := s.CreateAccounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	hp := startHeadplane(t, s, testbed.HeadplaneOptions{Config: readmeBlock(t, "# Headplane's config.yaml: the keys for headgate"),
		Overrides: map[string]any{"server": map[string]any{"proxy_auth": map[string]any{"user_header": "X-Headscale-User"}}}})
	g := startGateway(t, s, headplaneGateway(t, hp, map[string]any{"link": map[string]any{"ttl": "2s", "negative_ttl": "1s"}}))

	alice := newJar(t)
	if page := login(t, g, alice, testbed.Alice, "/admin/"); page.Status != http.StatusOK {
		t.Fatalf("Alice's sign-in: got %d", page.Status)
	}
	// A CLI user with Alice's name, and Carol's email.
	if _, err := s.CreateCLIUser(t.Context(), "alice", testbed.Carol.Email); err != nil {
		t.Fatal(err)
	}
	// headgate may still answer from the listing of Alice's sign-in for a few seconds
	// (headscale.list_max_age), then from Carol's "no user" for link.negative_ttl.
	var page *testbed.Page
	eventually(t, "Carol refused for the shared name", 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		page = login(t, g, newJar(t), testbed.Carol, "/admin/")
		return page.Status == http.StatusForbidden && strings.Contains(page.Body, "not unique"),
			fmt.Sprintf("%d %s", page.Status, regexp.MustCompile(`<h1>[^<]*`).FindString(page.Body))
	})
	checkReadablePage(t, "Carol's sign-in", page, http.StatusForbidden)
	// What Carol sees in a browser.
	b, tab := startBrowser(t)
	if err := b.Navigate(tab, g.URL+"/admin/"); err != nil {
		t.Fatal(err)
	}
	if err := b.DexLogin(tab, testbed.Carol.Email, testbed.Carol.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "h1", "Your Headscale user name is not unique"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "main", "Ask an administrator to rename one of the two users"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Tail(50), "shares its name") || !strings.Contains(g.Tail(50), a.Alice.ID) {
		t.Errorf("no log line naming the users:\n%s", g.Tail(20))
	}
	users := headplaneUsers(t, hp)
	if len(users) != 1 || users["proxy:alice"].Email != testbed.Alice.Email || users["proxy:alice"].Role != "owner" {
		t.Errorf("headplane accounts: got %+v, want only Alice's, with her email", users)
	}
	// Alice's session, begun before the duplicate, is refused once her link is checked again.
	eventually(t, "Alice's session refused", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		page := fetch(t, g, alice, http.MethodGet, "/admin/", http.Header{"Accept": {"text/html"}})
		return page.Status == http.StatusForbidden, fmt.Sprint(page.Status)
	})
	if got := headplaneUsers(t, hp); len(got) != 1 || got["proxy:alice"].Email != testbed.Alice.Email {
		t.Errorf("headplane accounts at the end: got %+v, want only Alice's, with her email", got)
	}
}

// TestHeadplaneMoveToUserIDHeader follows the README's steps for a Headplane that keyed its
// accounts on the name (user_header: X-Headscale-User): after the accounts are moved to the ID
// and Headplane runs the README's recipe, each person signs in to their old account, the owner
// still the owner.
func TestHeadplaneMoveToUserIDHeader(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	byName := map[string]any{"server": map[string]any{"proxy_auth": map[string]any{"user_header": "X-Headscale-User"}}}
	old := startHeadplane(t, s, testbed.HeadplaneOptions{Config: readmeBlock(t, "# Headplane's config.yaml: the keys for headgate"), Overrides: byName})
	g := startGateway(t, s, headplaneGateway(t, old, nil))
	login(t, g, newJar(t), testbed.Bob, "/admin/")
	login(t, g, newJar(t), testbed.Dave, "/admin/")
	before := headplaneUsers(t, old)
	if before["proxy:bob"].Role != "owner" || before["proxy:dave"].Role != "member" {
		t.Fatalf("accounts keyed on the name: got %+v, want proxy:bob the owner and proxy:dave a member", before)
	}
	old.Stop()

	// The README's step, for each person.
	for _, u := range []testbed.HeadscaleUser{accounts.Bob, accounts.Dave} {
		sql := fmt.Sprintf(readmeMoveStatement(t), u.ID, u.Name)
		if out, err := exec.CommandContext(t.Context(), "sqlite3", filepath.Join(old.DataDir, "hp_persist.db"), sql).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
	}

	hp := startHeadplane(t, s, testbed.HeadplaneOptions{Config: readmeBlock(t, "# Headplane's config.yaml: the keys for headgate"),
		Overrides: map[string]any{"server": map[string]any{"data_path": old.DataDir}}})
	g = startGateway(t, s, headplaneGateway(t, hp, nil))
	if page := login(t, g, newJar(t), testbed.Bob, "/admin/"); page.URL.Path != "/admin/machines" {
		t.Errorf("Bob after the move: landed at %s, want the owner's /admin/machines", page.URL.Path)
	}
	login(t, g, newJar(t), testbed.Dave, "/admin/")
	after := headplaneUsers(t, old)
	if len(after) != 2 {
		t.Errorf("accounts after the move: got %+v, want the same two", after)
	}
	for _, u := range []testbed.HeadscaleUser{accounts.Bob, accounts.Dave} {
		was, is := before["proxy:"+u.Name], after["proxy:"+u.ID]
		if is.ID != was.ID || is.Role != was.Role {
			t.Errorf("%s after the move: got %+v, want the account %+v under proxy:%s", u.Name, is, was, u.ID)
		}
	}
}

// readmeMoveStatement returns the README's SQL statement that moves an account from its name to
// its ID, with %[1]s for the ID and %[2]s for the name.
func readmeMoveStatement(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`"(UPDATE users SET sub = 'proxy:<ID>' WHERE sub = 'proxy:<name>';)"`).FindStringSubmatch(readmeText(t))
	if m == nil {
		t.Fatal("README.md has no statement that moves an account to its ID")
	}
	return strings.NewReplacer("<ID>", "%[1]s", "<name>", "%[2]s").Replace(m[1])
}

// TestHeadscaleNeverReusesUserIDs: the recipe keys Headplane's accounts on the Headscale user
// ID, which is safe only while a deleted user's ID never comes back for a new user (SQLite
// keeps AUTOINCREMENT keys unique even after the newest row is deleted).
func TestHeadscaleNeverReusesUserIDs(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	first, err := s.CreateCLIUser(t.Context(), "reuse-"+strings.ToLower(rand.Text()[:8]), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	second, err := s.CreateCLIUser(t.Context(), "reuse-"+strings.ToLower(rand.Text()[:8]), "")
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Errorf("Headscale gave a new user the ID %s of a deleted one", first.ID)
	}
}
