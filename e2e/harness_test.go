package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// The smoke tests of the harness itself: the real Headplane starts behind headgate, and
// headless Chromium signs in through Dex and lands on it. Headgate's behaviour in front of
// Headplane is tested elsewhere.

// startHeadplane starts a Headplane on s for this test (stopped when the test ends; the stack
// stops it too) and shows its log when the test fails.
func startHeadplane(t *testing.T, s *testbed.Stack, opts testbed.HeadplaneOptions) *testbed.Headplane {
	t.Helper()
	began := time.Now()
	hp, err := s.StartHeadplane(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("headplane started in %s", time.Since(began).Round(10*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", hp.LogPath, hp.Tail(25))
		}
		hp.Stop()
	})
	return hp
}

// headgateBeforeHeadplane starts a Headplane with the default recipe and a headgate instance
// in front of it.
func headgateBeforeHeadplane(t *testing.T) (*testbed.Headplane, *testbed.Gateway) {
	t.Helper()
	s := sharedStack(t)
	hp := startHeadplane(t, s, testbed.HeadplaneOptions{})
	g := startGateway(t, s, testbed.GatewayOptions{
		Extra:    map[string]any{"upstream": hp.URL},
		SkipAuth: testbed.HeadplaneSkipAuth(),
	})
	return hp, g
}

// startBrowser starts a headless Chromium for this test and opens a tab in it; it returns the
// tab's context. When the test fails, its log shows where the tab was and what went wrong in
// it, and a screenshot is written to the shared stack's directory (kept after a failed run).
func startBrowser(t *testing.T) (*testbed.Browser, context.Context) {
	t.Helper()
	return startBrowserVia(t, "", stack.Dir)
}

// startBrowserVia is startBrowser with the browser's requests sent through the HTTP proxy at
// proxyURL ("" for none), and the screenshot of a failure written to shotDir.
func startBrowserVia(t *testing.T, proxyURL, shotDir string) (*testbed.Browser, context.Context) {
	t.Helper()
	began := time.Now()
	// Not t.Context(): it ends before the cleanups that read the tab.
	b, err := testbed.StartBrowserVia(context.WithoutCancel(t.Context()), proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium started in %s", time.Since(began).Round(10*time.Millisecond))
	t.Cleanup(b.Close)
	tab, closeTab, err := b.NewTab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the tab is at %s; what went wrong in it: %q", testbed.WithoutQuery(b.URL(tab)), b.ConsoleErrors())
			shot := filepath.Join(shotDir, strings.ReplaceAll(t.Name(), "/", "-")+".png")
			if err := b.Screenshot(tab, shot); err != nil {
				t.Logf("no screenshot: %v", err)
			} else {
				t.Logf("screenshot: %s", shot)
			}
		}
		closeTab()
	})
	return b, tab
}

func TestHarnessHeadplaneBehindHeadgate(t *testing.T) {
	t.Parallel()
	hp, g := headgateBeforeHeadplane(t)

	page := login(t, g, newJar(t), testbed.Bob, "/admin/")
	if page.Status != http.StatusOK || !strings.HasPrefix(page.URL.Path, "/admin/") {
		t.Fatalf("sign-in at /admin/: got %d at %s, want 200 under /admin/ (%s)", page.Status, page.URL.Path, strings.Join(page.Hops, " -> "))
	}
	if !strings.Contains(page.Body, "/admin/assets/") {
		t.Errorf("/admin/: got a page that loads nothing from /admin/assets/, want Headplane's: %.300q", page.Body)
	}

	users, err := hp.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 {
		t.Fatalf("headplane users: got %+v, want one", users)
	}
	if got, want := users[0].Sub, "proxy:"+accounts.Bob.ID; got != want {
		t.Errorf("headplane user's sub: got %q, want %q", got, want)
	}
	if got, want := users[0].Role, "owner"; got != want {
		t.Errorf("headplane user's role: got %q, want %q", got, want)
	}
	if got, want := users[0].Email, testbed.Bob.Email; got != want {
		t.Errorf("headplane user's email: got %q, want %q", got, want)
	}
}

func TestHarnessChromiumSignsInToHeadplane(t *testing.T) {
	t.Parallel()
	hp, g := headgateBeforeHeadplane(t)
	b, tab := startBrowser(t)

	if err := b.Navigate(tab, g.URL+"/admin/"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, stack.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	err := b.DexLogin(tab, testbed.Alice.Email, "not-"+testbed.Alice.Password)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("sign-in with a wrong password: got %v, want dex's refusal", err)
	}
	refusal := b.ConsoleErrors()
	if len(refusal) != 1 || !strings.Contains(refusal[0], "answered 401") {
		t.Errorf("errors in the tab after the refusal: got %q, want dex's 401", refusal)
	}
	if err := b.DexLogin(tab, testbed.Alice.Email, testbed.Alice.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, g.URL+"/admin/"); err != nil {
		t.Fatal(err)
	}
	// Headplane's navigation for its owner, on the dashboard as on its page that asks an unlinked
	// owner to pick a Headscale user.
	if _, err := b.WaitText(tab, "body", "Machines"); err != nil {
		t.Fatal(err)
	}
	if got := b.ConsoleErrors()[len(refusal):]; len(got) != 0 {
		t.Errorf("errors in the tab after the sign-in: got %q, want none", got)
	}

	users, err := hp.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Sub != "proxy:"+accounts.Alice.ID || users[0].Role != "owner" {
		t.Errorf("headplane users: got %+v, want one owner with sub proxy:%s", users, accounts.Alice.ID)
	}
}

// TestHarnessBrowserRecordsErrors checks that ConsoleErrors sees what a test asserts the
// absence of: a console error, an uncaught exception, a failed response, an unreachable
// server; and a clean page adds nothing.
func TestHarnessBrowserRecordsErrors(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/favicon.ico": // a browser asks for it
			w.WriteHeader(http.StatusNoContent)
		case "/clean":
			fmt.Fprint(w, `<!doctype html><title>clean</title><h1>Clean</h1>`)
		case "/broken":
			fmt.Fprintf(w, `<!doctype html><title>broken</title><h1>Broken</h1>
<script>console.error("marker-console"); fetch("/missing"); fetch(%q).catch(() => {});
setTimeout(() => { throw new Error("marker-exception") }, 0)</script>`, closed.URL+"/gone")
		default:
			http.Error(w, "no such page", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	b, tab := startBrowser(t)

	if err := b.Navigate(tab, srv.URL+"/clean"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Text(tab, "h1"); err != nil || got != "Clean" {
		t.Fatalf("h1 of /clean: got %q, %v, want Clean", got, err)
	}
	if got := b.ConsoleErrors(); len(got) != 0 {
		t.Fatalf("after a clean page: got %q, want nothing", got)
	}

	if err := b.Navigate(tab, srv.URL+"/broken"); err != nil {
		t.Fatal(err)
	}
	wants := []string{"marker-console", "marker-exception", "GET " + srv.URL + "/missing answered 500", closed.URL + "/gone failed"}
	eventually(t, "every error recorded", 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		got := b.ConsoleErrors()
		for _, want := range wants {
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
				return false, fmt.Sprintf("%q lacks %q", got, want)
			}
		}
		return true, ""
	})
	if got := b.ConsoleErrors(); len(got) != len(wants) {
		t.Errorf("errors: got %q, want one line for each of %q", got, wants)
	}
}
