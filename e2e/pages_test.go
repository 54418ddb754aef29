package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"headgate/internal/testbed"
)

// TestRefusalSurvivesReload signs Erin in through Dex in Chromium: her Headscale user has her
// email, but Dex does not vouch for it. The page says so, and says it again when the tab is
// reloaded, instead of claiming that the sign-in expired.
func TestRefusalSurvivesReload(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	b, tab := startBrowser(t)

	if err := b.Navigate(tab, g.URL+prefix+"erin"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, stack.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	if err := b.DexLogin(tab, testbed.Erin.Email, testbed.Erin.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, g.URL+"/oauth2/sign_in_failed"); err != nil {
		t.Fatal(err)
	}
	const title = "Your email is not verified"
	for _, when := range []string{"after the sign-in", "after a reload"} {
		if _, err := b.WaitText(tab, "h1", title); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		text, err := b.Text(tab, "main")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, testbed.Erin.Email) || !strings.Contains(text, "Sign in again") || strings.Contains(text, "expired") {
			t.Errorf("%s: the page reads %q, want Erin's email, a way to sign in again and no word of an expired sign-in", when, text)
		}
		if err := b.Run(tab, "reload the page", chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(upstreamSaw(prefix)); n != 0 {
		t.Errorf("the upstream received %d requests of Erin, want none", n)
	}
}
