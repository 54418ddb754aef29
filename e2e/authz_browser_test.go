package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"headgate/internal/testbed"
)

// TestBrowserNotAllowed signs Alice in through Dex in headless Chromium at an instance whose
// access rules leave her out: the tab shows headgate's "Not allowed here" page, naming her and
// what kind of membership she lacks but none of the rules' values, and its Sign out button
// ends the session, so the next visit goes back to Dex.
func TestBrowserNotAllowed(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	const ruleEmail, ruleGroup = "vip-only@example.org", "secret-circle-7"
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{
		"oidc":   map[string]any{"scopes": groupScopes},
		"access": map[string]any{"emails": []string{ruleEmail}, "groups": []string{ruleGroup}},
	}})
	b, tab := startBrowser(t)
	prefix := testPrefix(t)

	browserSignIn(t, b, tab, g, testbed.Alice, prefix+"page", prefix+"page")
	if _, err := b.WaitText(tab, "h1", "Not allowed here"); err != nil {
		t.Fatal(err)
	}
	text, err := b.Text(tab, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{testbed.Alice.Email, "allowed email address", "allowed group at the identity provider"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not say %q: %q", want, text)
		}
	}
	source, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{ruleEmail, "example.org", ruleGroup} {
		if strings.Contains(source, secret) {
			t.Errorf("the page shows the rule's value %q: %q", secret, source)
		}
	}
	checkNoneReached(t, prefix)

	if err := b.Click(tab, "a.button"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "h1", "Signed out"); err != nil {
		t.Fatal(err)
	}
	if u := b.URL(tab); !strings.HasPrefix(u, g.URL+"/oauth2/sign_out") {
		t.Errorf("the Sign out button led to %s, want %s/oauth2/sign_out", testbed.WithoutQuery(u), g.URL)
	}
	// Without a session, the next visit is sent to sign in at Dex again.
	if err := b.Navigate(tab, g.URL+prefix+"again"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, s.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	checkNoTabErrors(t, b, 0, "the refusal and the sign-out", "GET "+g.URL+prefix+"page answered 403")
	checkNoneReached(t, prefix)
}
