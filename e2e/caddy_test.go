package e2e

import (
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// startRecipeCaddy runs the README's caddyfile block on 127.0.0.1:port in front of the headgate
// at gatewayAddr (host:port) and the stack's upstream. The proxy is closed when the test ends
// (see closedAtEnd).
func startRecipeCaddy(t *testing.T, s *testbed.Stack, port int, gatewayAddr string) *testbed.FrontProxy {
	t.Helper()
	site := caddySite(readmeFence(t, "caddyfile", ""), testbed.HostPort(port), gatewayAddr, strings.TrimPrefix(s.Upstream.URL, "http://"))
	return closedAtEnd(t)(s.StartCaddy(t.Context(), port, site))
}

// caddyOwned maps the header names the README's caddyfile block deletes or copies (lower case)
// to what the upstream must receive under them for Bob; "" means no header at all. Names the
// block deletes by family and headgate never sets stand for their families.
func caddyOwned() map[string]string {
	return map[string]string{
		"x-headscale-user":                  accounts.Bob.Name,
		"x-headscale-user-id":               accounts.Bob.ID,
		"x-headscale-role":                  "",
		"x-forwarded-user":                  accounts.Bob.Name,
		"x-forwarded-email":                 testbed.Bob.Email,
		"x-forwarded-preferred-username":    testbed.Bob.Username,
		"x-forwarded-groups":                "",
		"x-forwarded-access-token":          "",
		"x-auth-request-user":               accounts.Bob.Name,
		"x-auth-request-email":              testbed.Bob.Email,
		"x-auth-request-preferred-username": "",
		"x-auth-request-groups":             "",
		"x-auth-request-cookie":             "",
		"x-auth-request-access-token":       "",
		"remote-user":                       "",
		"remote-email":                      "",
		"remote-name":                       "",
		"remote-groups":                     "",
	}
}

// TestCaddyRecipe runs the README's caddyfile block in the suite's Caddy (built from the tools
// module) in front of headgate; see testForwardAuthRecipe for what it proves.
func TestCaddyRecipe(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	testForwardAuthRecipe(t, "caddy", caddyOwned(), func(port int, gatewayAddr string) string {
		return startRecipeCaddy(t, s, port, gatewayAddr).URL
	})
}

// caddySite turns the README's caddyfile block into a site for StartCaddy: its site address
// (app.example.com) becomes http://ADDR, and the addresses of headgate (127.0.0.1:4180) and of
// the upstream (127.0.0.1:3000) become gatewayAddr and upstreamAddr. Nothing else changes.
func caddySite(block, addr, gatewayAddr, upstreamAddr string) string {
	return strings.NewReplacer("app.example.com {", "http://"+addr+" {",
		"127.0.0.1:4180", gatewayAddr, "127.0.0.1:3000", upstreamAddr).Replace(block)
}
