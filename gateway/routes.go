package gateway

import (
	"net/http"
	"slices"
	"strings"
)

// routes is headgate's whole URL surface. Everything that is not headgate's own is proxied to
// the upstream: without a session for the skip_auth paths, with a proven identity otherwise.
func (g *Gateway) routes() *http.ServeMux {
	mux := http.NewServeMux()

	// Sign-in and sign-out (oauth2-proxy's names, so existing recipes carry over).
	mux.HandleFunc("GET /oauth2/start", g.serveStart)
	mux.HandleFunc("GET /oauth2/sign_in", g.serveSignIn) // a page that goes on to /oauth2/start
	mux.HandleFunc("GET /oauth2/callback", g.serveCallback)
	mux.HandleFunc("GET "+failurePath, g.serveSignInFailed) // how the last sign-in failed, again on reload
	mux.HandleFunc("GET /oauth2/sign_out", g.serveSignOut)
	mux.HandleFunc("POST /oauth2/sign_out", g.serveSignOut)
	mux.HandleFunc("GET /oauth2/signed_out", g.serveSignedOut) // back from the provider's sign-out
	// OpenID Connect Back-Channel Logout: the identity provider ends sessions.
	mux.HandleFunc("POST /oauth2/backchannel_logout", g.serveBackchannelLogout)

	// Forward auth for nginx auth_request, Traefik forwardAuth and Caddy forward_auth.
	mux.HandleFunc("GET /oauth2/auth", g.serveAuth)
	mux.HandleFunc("HEAD /oauth2/auth", g.serveAuth)
	mux.HandleFunc("GET /oauth2/userinfo", g.serveUserInfo)

	// The keys identity assertions are signed with, for upstreams to verify them.
	if g.asserter != nil {
		mux.HandleFunc("GET "+assertionIssuerPath+assertionDiscoveryPath, g.asserter.serveDiscovery)
		mux.HandleFunc("GET "+assertionIssuerPath+assertionKeysPath, g.asserter.serveKeys)
	}

	// Probes carry no identity and never reach the upstream.
	mux.HandleFunc("GET /ping", g.servePing)
	mux.HandleFunc("GET /ready", g.serveReady)

	// Any other /oauth2/ path is headgate's and unknown; never proxied.
	mux.HandleFunc("/oauth2/", g.serveNotFound)

	// Upstream paths that also end headgate's session: sign_out_paths and Headplane's Logout,
	// each also as the data request Headplane's client sends for it. They never reach the
	// upstream.
	for _, p := range g.signOutPatterns() {
		mux.HandleFunc(p, g.serveSignOut)
	}

	mux.HandleFunc("/", g.serveProxy)
	return mux
}

// signOutPatterns returns the ServeMux patterns of every route's sign-out paths, each once: on
// the route's host when it names one, the path exactly (a trailing slash ends the match, it
// does not start a subtree) and, under Headplane, its React Router data request.
func (g *Gateway) signOutPatterns() []string {
	var patterns []string
	add := func(host, path string) {
		p := host + path
		if strings.HasSuffix(p, "/") {
			p += "{$}"
		}
		if !slices.Contains(patterns, p) {
			patterns = append(patterns, p)
		}
	}
	routes := g.table.every
	if g.def != nil {
		routes = append([]*route{g.def}, routes...)
	}
	for _, rt := range routes {
		for _, path := range rt.signOutPaths {
			add(rt.host, path)
			if rt == g.def && g.hpPath != "" && g.underHeadplane(path) {
				if strings.HasSuffix(path, "/") {
					add(rt.host, path+"_.data")
				} else {
					add(rt.host, path+".data")
				}
			}
		}
	}
	return patterns
}
