package e2e

import (
	"strings"
	"testing"
)

// startRecipeCaddy runs the README's caddyfile block on 127.0.0.1:port in front of the headgate
// at gatewayAddr (host:port) and the stack's upstream. The proxy is closed when the test ends
// (see closedAtEnd).
func startRecipeCaddy(t *testing.T, s *Stack, port int, gatewayAddr string) *FrontProxy {
	t.Helper()
	site := caddySite(readmeFence(t, "caddyfile", ""), hostPort(port), gatewayAddr, strings.TrimPrefix(s.Upstream.URL, "http://"))
	return closedAtEnd(t)(StartCaddy(t.Context(), s.bin.caddy, port, site))
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
		"x-forwarded-email":                 Bob.Email,
		"x-forwarded-preferred-username":    Bob.Username,
		"x-forwarded-groups":                "",
		"x-forwarded-access-token":          "",
		"x-auth-request-user":               accounts.Bob.Name,
		"x-auth-request-email":              Bob.Email,
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
