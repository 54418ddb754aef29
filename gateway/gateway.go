// Package gateway is headgate's HTTP surface: the OpenID Connect sign-in, the session check, the
// reverse proxy that sets the Headscale identity headers, forward-auth answers for nginx, Traefik
// and Caddy, and the pages a browser sees when something fails.
//
// The gateway trusts nothing a client sends under the identity header names: it deletes every
// such header, whatever its case or spelling, before it sets its own.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"headgate/linker"
	"headgate/session"

	"github.com/prometheus/client_golang/prometheus"
)

// Store keeps the server-side record of each session, so that a sign-out on any instance ends
// the session everywhere. session.RedisStore and session.MemoryStore implement it.
type Store interface {
	// Create records a new session.
	Create(ctx context.Context, s *session.Session) error
	// Check answers nil for a live session, session.ErrRevoked for an ended one and an error
	// wrapping session.ErrUnavailable when the store cannot answer.
	Check(ctx context.Context, s *session.Session) error
	// Revoke ends a session on every instance.
	Revoke(ctx context.Context, s *session.Session) error
	// RevokeProviderSessions ends on every instance the sessions of subject at issuer, or,
	// when providerSession is set, those begun in it and those of subject begun without one,
	// and reports how many were live.
	RevokeProviderSessions(ctx context.Context, issuer, subject, providerSession string) (int, error)
	// Claim reports whether key is claimed for the first time within ttl.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Shared returns the value every instance sharing the store has under name, storing the
	// one create makes when there is none.
	Shared(ctx context.Context, name string, ttl time.Duration, create func() ([]byte, error)) ([]byte, error)
}

// Gateway is headgate's http.Handler. Build it with New; it is safe for concurrent use.
type Gateway struct {
	cfg    Config
	public *url.URL
	origin string // public's scheme and host, for absolute redirects
	// def is the default route (nil when only Routes serve); table chooses each request's.
	def   *route
	table *routeTable
	// extraHeaders are the names routes set identity headers under beyond the owned ones,
	// lower case with "-": whatever a client sends under them is removed on every route.
	extraHeaders []string
	// base is the default route, or, without one, a route with no upstream whose rules are
	// link.unlinked and no access rules, for what no route describes (/oauth2/userinfo).
	base *route
	// asserter signs identity assertions; nil without Assertion.Header.
	asserter *asserter
	// groups are the Headscale policy's groups; nil: none are read.
	groups *linker.PolicyGroups
	// hpPath is HeadplaneConfig.Path without a trailing slash, "" when Headplane is not
	// configured; hpLinkAtSignIn is HeadplaneConfig.LinkAtSignIn with its default applied.
	hpPath         string
	hpLinkAtSignIn bool
	// hpManifest is Headplane's route manifest path (see dataRequest), "" without Headplane.
	hpManifest string
	trusted    []netip.Prefix // TrustedProxies
	cookies    *session.Cookies
	store      Store
	links      *linker.Linker
	log        *slog.Logger
	oidc       *oidcClient
	proxy      *httputil.ReverseProxy
	metrics    *metrics
	mux        *http.ServeMux
	timing     Timing
	// crossOrigin judges whether a POST comes from another origin (see serveSignOut).
	crossOrigin *http.CrossOriginProtection

	// streams are the event streams and upgraded connections being proxied (see stream.go).
	streams *streamRegistry
	// bigIDTokenOnce logs the first ID token too large to keep (see keepIDToken).
	bigIDTokenOnce sync.Once
}

// New builds the gateway, which keeps time and waits as timing says. It does not contact the
// identity provider: discovery happens on the first sign-in and is retried while the provider
// is unreachable, so headgate starts (and serves existing sessions) while the provider is down.
// cfg must have its defaults applied (SetDefaults).
func New(cfg Config, cookies *session.Cookies, store Store, links *linker.Linker, groups *linker.PolicyGroups, timing Timing, log *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	public, _ := url.Parse(cfg.PublicURL)
	timing = timing.withDefaults()
	streams := newStreamRegistry(store, timing)
	m, err := newMetrics(reg, groups, streams)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	g := &Gateway{
		cfg:     cfg,
		public:  public,
		origin:  public.Scheme + "://" + public.Host,
		hpPath:  strings.TrimSuffix(cfg.Headplane.Path, "/"),
		cookies: cookies,
		store:   store,
		links:   links,
		groups:  groups,
		log:     log,
		metrics: m,
		timing:  timing,
		streams: streams,
	}
	g.hpLinkAtSignIn = g.hpPath != "" && *cfg.Headplane.LinkAtSignIn
	if g.hpPath != "" {
		g.hpManifest = g.hpPath + "/__manifest"
	}
	for _, p := range cfg.TrustedProxies {
		prefix, _ := parsePrefix(p) // Validate checked it
		g.trusted = append(g.trusted, prefix)
	}
	g.crossOrigin = http.NewCrossOriginProtection()
	// Behind a proxy that rewrites Host, a browser's Origin is still the public URL's.
	if err := g.crossOrigin.AddTrustedOrigin(g.origin); err != nil {
		return nil, fmt.Errorf("public_url: %w", err)
	}
	g.buildRoutes()
	if cfg.Assertion.Header != "" {
		if g.asserter, err = g.newAsserter(); err != nil {
			return nil, err
		}
		if lower := strings.ToLower(cfg.Assertion.Header); !ownedHeader(lower) {
			g.extraHeaders = append(g.extraHeaders, lower)
		}
	}
	g.oidc = newOIDCClient(cfg.OIDC, strings.TrimSuffix(public.String(), "/")+"/oauth2/callback", g.timing)
	g.proxy = g.newProxy()
	g.mux = g.routes()
	return g, nil
}

// ServeHTTP dispatches a request through the route table in routes.go, and logs it with
// AccessLog (see serveLogged).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.cfg.AccessLog {
		g.serveLogged(w, r, g.mux)
		return
	}
	g.serve(w, r, g.mux)
}

// serve dispatches a request. Its body is read under BodyTimeout (see boundBody), so that no
// client holds a connection without a bound.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	if hasBody(r) {
		boundBody(w, r, g.cfg.BodyTimeout)
	}
	mux.ServeHTTP(w, r)
}
