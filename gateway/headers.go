package gateway

import "net/http"

// Identity headers set on proxied requests and on forward-auth answers.
const (
	headerUser              = "X-Headscale-User"
	headerUserID            = "X-Headscale-User-Id"
	headerForwardedUser     = "X-Forwarded-User"
	headerForwardedEmail    = "X-Forwarded-Email"
	headerForwardedUsername = "X-Forwarded-Preferred-Username"
	headerAuthRequestUser   = "X-Auth-Request-User"
	headerAuthRequestEmail  = "X-Auth-Request-Email"
	headerAuthRequestGroups = "X-Auth-Request-Groups"
	headerForwardedGroups   = "X-Forwarded-Groups"
	headerHeadscaleGroups   = "X-Headscale-Groups"
)

// ownedPrefixes and ownedNames are the header names the gateway owns, lower case with "-".
// Whatever a client sends under them, in any case and with "_" for "-", is deleted before the
// request goes on: an upstream that trusts one of them must get it from headgate only. The list
// is wider than what headgate sets, to cover the names other header-auth setups read (Headplane's
// default is Remote-User), the names under which proxies tell an app the client's address or
// scheme (headgate sets X-Real-IP and X-Forwarded-For, -Host and -Proto itself), and the names
// some frameworks take to override the request's path or method, with which a request headgate
// let through for one path or method would be served as another.
var (
	ownedPrefixes = []string{"x-headscale-", "x-auth-request-", "x-forwarded-preferred-"}
	ownedNames    = []string{
		"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-access-token",
		"remote-user", "remote-email", "remote-name", "remote-groups",
		// The client's address and scheme.
		"x-real-ip", "x-client-ip", "true-client-ip", "cf-connecting-ip", "fastly-client-ip",
		"x-cluster-client-ip", "x-original-forwarded-for", "x-originating-ip", "x-remote-ip",
		"x-remote-addr", "client-ip", "forwarded-for", "x-forwarded", "x-forwarded-port",
		"x-forwarded-server", "x-forwarded-scheme", "x-forwarded-ssl", "x-url-scheme", "front-end-https",
		// The request's path and method.
		"x-original-url", "x-rewrite-url", "x-original-uri", "x-http-method-override", "x-http-method",
		"x-method-override",
	}
)

// headerRealIP names the client's address for the upstream, as nginx's recipes set it.
const headerRealIP = "X-Real-Ip"

// ownedHeader reports whether name is a header the gateway owns. It allocates nothing: it is on
// every proxied request.
func ownedHeader(name string) bool {
	for _, p := range ownedPrefixes {
		if len(name) >= len(p) && foldEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range ownedNames {
		if len(name) == len(n) && foldEqual(name, n) {
			return true
		}
	}
	return false
}

// foldEqual compares s with lower, a lower-case name using "-", reading s case-insensitively
// and with "_" as "-".
func foldEqual(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// stripOwnedHeaders deletes every header the gateway owns from h.
func stripOwnedHeaders(h http.Header) {
	for name := range h {
		if ownedHeader(name) {
			delete(h, name)
		}
	}
}

// stripOwnedHeaders deletes from h every header the gateway owns, and every name a route sets
// an identity under or the assertion travels in, in any case and with "_" for "-".
func (g *Gateway) stripOwnedHeaders(h http.Header) {
	for name := range h {
		if ownedHeader(name) || g.extraHeader(name) {
			delete(h, name)
		}
	}
}

// extraHeader reports whether name is one of g.extraHeaders.
func (g *Gateway) extraHeader(name string) bool {
	for _, n := range g.extraHeaders {
		if len(name) == len(n) && foldEqual(name, n) {
			return true
		}
	}
	return false
}

// setIdentityHeaders sets the identity of p on h: the Headscale headers when the person is
// linked to a Headscale user, and oauth2-proxy's X-Forwarded-* names. Forward-auth answers
// (forwardAuth) also carry X-Auth-Request-User and -Email, the names nginx recipes read. The
// values share one backing array: this runs on every proxied request.
//
// Every value that names a person is unique to them: the user headers carry the Headscale
// user's ID or its name, which authenticate lets through only while no other Headscale user
// has it (see linker.Link.NameSharedWith), and are left out for a person without a Headscale
// user (unlinked: allow); the email headers carry only an email the identity provider has
// verified. X-Forwarded-Preferred-Username is the provider's preferred_username, which a
// person may often choose: a display name, never an identity. X-Forwarded-Groups carries the
// identity provider's groups and X-Headscale-Groups the user's groups in Headscale's policy,
// each as groupsHeader writes them. Last come the further headers of the route rt.
func setIdentityHeaders(h http.Header, p principal, rt *route, forwardAuth bool) {
	v := make([]string, 0, 11+len(rt.headers))
	set := func(name, value string) {
		v = append(v, value)
		h[name] = v[len(v)-1 : len(v) : len(v)]
	}
	email := ""
	if p.session.EmailVerified {
		email = p.session.Email
	}
	if p.link.Linked() {
		set(headerUser, p.link.UserName)
		set(headerUserID, p.link.UserID)
		set(headerForwardedUser, p.link.UserName)
		if forwardAuth {
			set(headerAuthRequestUser, p.link.UserName)
		}
	}
	if email != "" {
		set(headerForwardedEmail, email)
		if forwardAuth {
			set(headerAuthRequestEmail, email)
		}
	}
	if p.session.PreferredUsername != "" {
		set(headerForwardedUsername, p.session.PreferredUsername)
	}
	if len(p.session.Groups) > 0 {
		groups := groupsHeader(p.session.Groups)
		set(headerForwardedGroups, groups)
		if forwardAuth {
			set(headerAuthRequestGroups, groups)
		}
	}
	if len(p.headscaleGroups) > 0 {
		set(headerHeadscaleGroups, groupsHeader(p.headscaleGroups))
	}
	for _, hv := range rt.headers {
		if value := p.headerValue(hv[1]); value != "" {
			set(hv[0], value)
		}
	}
	if p.assertion != "" {
		set(rt.assertionHeader, p.assertion)
	}
}
