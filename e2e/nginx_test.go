package e2e

import (
	"strings"
	"testing"

	"headgate/internal/testbed"
)

// startRecipeNginx runs the README's nginx block on 127.0.0.1:port in front of the headgate at
// gatewayAddr (host:port) and the stack's upstream. The proxy is closed when the test ends
// (see closedAtEnd).
func startRecipeNginx(t *testing.T, s *testbed.Stack, port int, gatewayAddr string) *testbed.FrontProxy {
	t.Helper()
	server := nginxServer(readmeFence(t, "nginx", ""), gatewayAddr, strings.TrimPrefix(s.Upstream.URL, "http://"))
	return closedAtEnd(t)(testbed.StartNginx(t.Context(), port, server))
}

// nginxOwned maps the header names the README's nginx block sets (lower case) to what the
// upstream must receive under them for Bob; "" means no header at all.
func nginxOwned() map[string]string {
	return map[string]string{
		"x-headscale-user":                  accounts.Bob.Name,
		"x-headscale-user-id":               accounts.Bob.ID,
		"x-forwarded-user":                  accounts.Bob.Name,
		"x-forwarded-email":                 testbed.Bob.Email,
		"x-forwarded-preferred-username":    testbed.Bob.Username,
		"x-auth-request-user":               accounts.Bob.Name,
		"x-auth-request-email":              testbed.Bob.Email,
		"x-auth-request-preferred-username": "",
		"x-auth-request-groups":             "",
		"x-auth-request-cookie":             "",
		"x-forwarded-groups":                "",
		"remote-user":                       accounts.Bob.Name,
		"remote-email":                      testbed.Bob.Email,
		"remote-name":                       "",
		"remote-groups":                     "",
	}
}

// TestNginxRecipe runs the README's nginx block in Debian's nginx in front of headgate; see
// testForwardAuthRecipe for what it proves.
func TestNginxRecipe(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	testForwardAuthRecipe(t, "nginx", nginxOwned(), func(port int, gatewayAddr string) string {
		return startRecipeNginx(t, s, port, gatewayAddr).URL
	})
}

// nginxServer turns the README's nginx block into a server body for StartNginx: the
// addresses of headgate (127.0.0.1:4180) and of the upstream (127.0.0.1:3000) become
// gatewayAddr and upstreamAddr. Nothing else changes.
func nginxServer(block, gatewayAddr, upstreamAddr string) string {
	return strings.NewReplacer("127.0.0.1:4180", gatewayAddr, "127.0.0.1:3000", upstreamAddr).Replace(block)
}
