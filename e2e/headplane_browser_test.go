package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"headgate/internal/testbed"
)

// What a person does in Headplane behind headgate, in headless Chromium.

// Headplane's controls, as its build renders them.
const (
	// hpUserMenu is the avatar button that opens the menu with Logout.
	hpUserMenu = `header button[aria-haspopup="menu"].overflow-hidden`
	// hpLogout is the Logout item of that menu.
	hpLogout = `//*[@role="menuitem"][normalize-space()="Logout"]`
	// hpUsersLink is the Users tab of the navigation.
	hpUsersLink = `header nav a[href="/admin/users"]`
	// hpLinkSelect and hpLinkSubmit are the picker's list of Headscale users and its button.
	hpLinkSelect = `select[name="headscale_user_id"]`
	hpLinkSubmit = `//button[normalize-space()="Link and Continue"]`
)

// clickSearch clicks the first element matching an XPath query in tab.
func clickSearch(b *testbed.Browser, tab context.Context, xpath string) error {
	return b.Run(tab, "click "+xpath, chromedp.Click(chromedp.Search(xpath)))
}

// openMenu clicks the button matching the CSS selector until the element matching the XPath
// query shows: a click before Headplane's script has taken over the page does nothing.
func openMenu(b *testbed.Browser, tab context.Context, button, item string) error {
	js := fmt.Sprintf(`(() => {
		const found = document.evaluate(%q, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
		if (found) return true;
		document.querySelector(%q)?.click();
		return false;
	})()`, item, button)
	return b.Poll(tab, "open the menu with "+item, func(ctx context.Context) (bool, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	})
}

// browserSignIn signs u in through Dex in tab, starting at path on g, and waits for the tab to
// come back to g at want.
func browserSignIn(t *testing.T, b *testbed.Browser, tab context.Context, g *testbed.Gateway, u testbed.User, path, want string) {
	t.Helper()
	if err := b.Navigate(tab, g.URL+path); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, stack.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	if err := b.DexLogin(tab, u.Email, u.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, g.URL+want); err != nil {
		t.Fatal(err)
	}
}

// checkNoTabErrors fails the test for any error the tab recorded after the first skip, other
// than those expected contains.
func checkNoTabErrors(t *testing.T, b *testbed.Browser, skip int, what string, expected ...string) {
	t.Helper()
	for _, e := range b.ConsoleErrors()[skip:] {
		ok := false
		for _, x := range expected {
			ok = ok || strings.Contains(e, x)
		}
		if !ok {
			t.Errorf("%s: the tab recorded %q", what, e)
		}
	}
}

// TestBrowserHeadplaneSignInAndLogout: the owner signs in and lands on Headplane's machines
// page; Headplane's Logout ends the session and the tab lands on headgate's signed-out page,
// without an error in the tab.
func TestBrowserHeadplaneSignInAndLogout(t *testing.T) {
	t.Parallel()
	hp, g := readmeHeadplane(t, sharedStack(t), nil)
	b, tab := startBrowser(t)

	browserSignIn(t, b, tab, g, testbed.Bob, "/admin/", "/admin/machines")
	if _, err := b.WaitText(tab, "header nav", "Machines"); err != nil {
		t.Fatal(err)
	}
	if u := headplaneUsers(t, hp)["proxy:"+accounts.Bob.ID]; u.Role != "owner" || u.HeadscaleUserID != accounts.Bob.ID {
		t.Errorf("Bob's Headplane account: got %+v, want the owner, linked to his Headscale user", u)
	}
	before := len(b.ConsoleErrors())

	if err := openMenu(b, tab, hpUserMenu, hpLogout); err != nil {
		t.Fatal(err)
	}
	if err := clickSearch(b, tab, hpLogout); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, g.URL+"/oauth2/signed_out"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "h1", "Signed out"); err != nil {
		t.Fatal(err)
	}
	// Headplane's live-update stream is cut by the sign-out; nothing else may go wrong.
	checkNoTabErrors(t, b, before, "after Logout", "/admin/events/live", "/admin/favicon.ico")

	// The session is over: Headplane is behind a sign-in again.
	if err := b.Navigate(tab, g.URL+"/admin/machines"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, stack.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserHeadplaneOpenTabAfterSignOut: a tab left open on Headplane after the person signed
// out in another tab goes, at its next click, to sign in and then to the page clicked, with no
// error shown.
func TestBrowserHeadplaneOpenTabAfterSignOut(t *testing.T) {
	t.Parallel()
	_, g := readmeHeadplane(t, sharedStack(t), nil)
	b, tab := startBrowser(t)

	browserSignIn(t, b, tab, g, testbed.Bob, "/admin/machines", "/admin/machines")
	if _, err := b.WaitText(tab, "header nav", "Users"); err != nil {
		t.Fatal(err)
	}
	other, closeOther, err := b.NewTab()
	if err != nil {
		t.Fatal(err)
	}
	defer closeOther()
	if err := b.Navigate(other, g.URL+"/oauth2/sign_out"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(other, "h1", "Signed out"); err != nil {
		t.Fatal(err)
	}
	before := len(b.ConsoleErrors())

	if err := b.Click(tab, hpUsersLink); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, stack.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	if err := b.DexLogin(tab, testbed.Bob.Email, testbed.Bob.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, g.URL+"/admin/users"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "main", "Users"); err != nil {
		t.Fatal(err)
	}
	// The live-update stream and the icon, asked for by the tab while its session was over,
	// get 401s; nothing else may go wrong.
	checkNoTabErrors(t, b, before, "the open tab", "/admin/events/live", "/admin/favicon.ico")
}

// TestBrowserHeadplaneLinkPicker: with link_at_sign_in off, Headplane shows its picker; choosing
// another person's Headscale user is refused and links nothing, choosing one's own links it.
func TestBrowserHeadplaneLinkPicker(t *testing.T) {
	t.Parallel()
	hp, g := readmeHeadplane(t, sharedStack(t), map[string]any{"headplane": map[string]any{"link_at_sign_in": false}})
	login(t, g, newJar(t), testbed.Bob, "/admin/") // the owner
	b, tab := startBrowser(t)

	browserSignIn(t, b, tab, g, testbed.Dave, "/admin/", "/admin/")
	if _, err := b.WaitText(tab, "main", "Link your Headscale account"); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(tab, "choose Alice's user", chromedp.SetValue(chromedp.CSS(hpLinkSelect), accounts.Alice.ID)); err != nil {
		t.Fatal(err)
	}
	if err := clickSearch(b, tab, hpLinkSubmit); err != nil {
		t.Fatal(err)
	}
	// Before Headplane's script has taken over the page, the form posts as a page of its own and
	// headgate's refusal page answers; after, Headplane shows headgate's refusal in its error box.
	// Both say the same.
	if _, err := b.WaitText(tab, "body", "You signed in as the Headscale user \u201cdave\u201d. Your Headplane account can be linked to that user only."); err != nil {
		t.Fatal(err)
	}
	daveSub := "proxy:" + accounts.Dave.ID
	if got := headplaneUsers(t, hp)[daveSub].HeadscaleUserID; got != "" {
		t.Fatalf("Dave's account is linked to Headscale user %q, want none", got)
	}

	if err := b.Navigate(tab, g.URL+"/admin/"); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(tab, "choose his own user", chromedp.SetValue(chromedp.CSS(hpLinkSelect), accounts.Dave.ID)); err != nil {
		t.Fatal(err)
	}
	if err := clickSearch(b, tab, hpLinkSubmit); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave's account linked", testbed.BrowserTimeout, 100*time.Millisecond, func() (bool, string) {
		got := headplaneUsers(t, hp)[daveSub].HeadscaleUserID
		return got == accounts.Dave.ID, got
	})
}
