// Package gateway is headgate's HTTP surface: the OpenID Connect sign-in, the session check, the
// reverse proxy that sets the Headscale identity headers, forward-auth answers for nginx, Traefik
// and Caddy, and the pages a browser sees when something fails.
//
// The gateway trusts nothing a client sends under the identity header names: it deletes every
// such header, whatever its case or spelling, before it sets its own.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"headgate/linker"
	"headgate/session"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the part of gateway.yaml that shapes the HTTP surface. The zero value of an optional
// field selects the default named in its comment.
type Config struct {
	// PublicURL is the origin browsers use to reach headgate, such as https://gate.example.com.
	// Required. The OIDC redirect URI is PublicURL + "/oauth2/callback"; an https URL makes the
	// cookies Secure.
	PublicURL string `yaml:"public_url"`

	// Upstream is the http(s) URL that authenticated requests are proxied to: the default
	// route's, which serves every request no entry of Routes takes. Required unless Routes is
	// set; without it, a request no route takes gets a 404 page.
	Upstream string `yaml:"upstream"`

	// SkipAuth lists request paths proxied without a session and always without identity
	// headers, such as a health check. An entry ending in "/" matches every path under it;
	// any other entry matches that exact path. Requests whose path carries percent-encoded
	// characters never match, so an encoded slash or dot cannot widen an entry.
	SkipAuth []string `yaml:"skip_auth"`

	// SignOutPaths lists upstream paths that also end headgate's session, such as Headplane's
	// logout (/admin/logout), whose own button cannot end it. A request to one is answered by
	// headgate's sign-out and never reaches the upstream. Default: none.
	SignOutPaths []string `yaml:"sign_out_paths"`

	// RedirectDomains lists other hosts that sign-in and sign-out may return to, for
	// forward-auth setups where the protected app lives on another host. "app.example.com"
	// matches that host; ".example.com" matches every subdomain. Default: none, only paths on
	// PublicURL's origin.
	RedirectDomains []string `yaml:"redirect_domains"`

	// PreserveHost keeps the browser's Host header on proxied requests. Default true: Headplane
	// compares a form's Origin with the Host it receives and refuses a rewritten one.
	PreserveHost *bool `yaml:"preserve_host"`

	// TrustedProxies lists the proxies in front of headgate, such as a load balancer that
	// terminates TLS, as IP addresses or CIDR prefixes. A request from one of them keeps the
	// X-Forwarded-For chain it carries (headgate appends the proxy's address) and its
	// X-Forwarded-Proto (http or https) and X-Forwarded-Host. From any other address these
	// headers are replaced with what headgate saw itself. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// UpstreamTimeout bounds the wait for the upstream's response headers; a slower upstream
	// gets a 504 page. Streams (Server-Sent Events, WebSockets) are not cut once headers
	// arrived. Default 30s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`

	// BodyTimeout bounds how long a client may pause while it sends a request body: a body
	// that brings no byte for this long is abandoned and the connection closed. Time the
	// upstream takes to read what headgate passes on does not count. A request headgate
	// refuses is answered at once, without waiting for its body. Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`

	// Access says who may use the default route's upstream. Default: every proven identity.
	Access AccessConfig `yaml:"access"`

	// Headers sets further identity headers on the default route's requests (see
	// RouteConfig.Headers).
	Headers map[string]string `yaml:"headers"`

	// Routes puts further upstreams behind headgate, each chosen by host and path prefix and
	// with rules of its own. One sign-in covers them all (within the session cookie's scope).
	Routes []RouteConfig `yaml:"routes"`

	// Assertion adds a signed identity assertion to every authenticated request.
	Assertion AssertionConfig `yaml:"assertion"`

	// OIDC is the identity provider headgate signs users in with.
	OIDC OIDCConfig `yaml:"oidc"`

	// Headplane says where the upstream serves Headplane, for what headgate does for it.
	Headplane HeadplaneConfig `yaml:"headplane"`
}

// OIDCConfig names the OpenID Connect provider and headgate's client registration there.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; discovery reads Issuer +
	// "/.well-known/openid-configuration". Required.
	Issuer string `yaml:"issuer"`

	// ClientID is headgate's client ID at the provider. Required.
	ClientID string `yaml:"client_id"`

	// ClientSecret is headgate's client secret. Required, here or in ClientSecretFile.
	ClientSecret string `yaml:"client_secret"`

	// ClientSecretFile names a file holding the client secret (surrounding whitespace is
	// trimmed). Exclusive with ClientSecret.
	ClientSecretFile string `yaml:"client_secret_file"`

	// Scopes requested at sign-in. Default [openid, email, profile]; must contain openid.
	Scopes []string `yaml:"scopes"`

	// AuthParams are extra query parameters for the authorization request, such as Dex's
	// connector_id or Google's hd. The protocol's own parameters cannot be overridden.
	AuthParams map[string]string `yaml:"auth_params"`

	// GroupsClaim names the claim of the ID token (or of userinfo, when the ID token lacks it)
	// that lists the person's groups: a name, or a dotted path into nested claims such as
	// Keycloak's realm_access.roles. The groups are forwarded as X-Forwarded-Groups and may be
	// named by access rules. Many providers send groups only when asked for a scope (Dex,
	// Authentik: groups). Default "groups"; "-": read no groups.
	GroupsClaim string `yaml:"groups_claim"`

	// Timeout bounds each call to the provider (discovery, keys, token exchange). Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	// SignOutAtProvider makes a sign-out also end the person's session at the provider
	// (OpenID Connect RP-Initiated Logout) when its discovery document names an
	// end_session_endpoint: the browser is sent there and comes back to PublicURL +
	// "/oauth2/signed_out", which must be registered at the provider as a post-logout redirect
	// URI. Default false: the provider's session stays, and signing in again needs no password.
	SignOutAtProvider bool `yaml:"sign_out_at_provider"`
}

// Defaults that SetDefaults applies to zero fields.
const (
	defaultUpstreamTimeout = 30 * time.Second
	defaultBodyTimeout     = 30 * time.Second
	defaultOIDCTimeout     = 10 * time.Second
)

// SetDefaults sets every zero field to the default its comment names. It is the one place
// defaults are applied: loading gateway.yaml calls it once, before Validate, and whatever
// builds a config in code calls it the same way; constructors take the config as it is.
func (c *Config) SetDefaults() {
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = defaultUpstreamTimeout
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = defaultBodyTimeout
	}
	if c.PreserveHost == nil {
		c.PreserveHost = new(true)
	}
	if c.OIDC.Timeout == 0 {
		c.OIDC.Timeout = defaultOIDCTimeout
	}
	if len(c.OIDC.Scopes) == 0 {
		c.OIDC.Scopes = []string{"openid", "email", "profile"}
	}
	if c.OIDC.GroupsClaim == "" {
		c.OIDC.GroupsClaim = "groups"
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Path == "" {
			r.Path = "/"
		}
		if r.PreserveHost == nil {
			r.PreserveHost = new(true)
		}
		if r.Name == "" {
			r.Name = r.Host + r.Path
		}
	}
	c.Assertion.setDefaults()
	if c.Headplane.Path != "" && c.Headplane.LinkAtSignIn == nil {
		c.Headplane.LinkAtSignIn = new(true)
	}
}

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

	draining  chan struct{} // closed by Drain
	drainOnce sync.Once
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
	m, err := newMetrics(reg, groups)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		public:   public,
		origin:   public.Scheme + "://" + public.Host,
		hpPath:   strings.TrimSuffix(cfg.Headplane.Path, "/"),
		cookies:  cookies,
		store:    store,
		links:    links,
		groups:   groups,
		log:      log,
		metrics:  m,
		timing:   timing.withDefaults(),
		draining: make(chan struct{}),
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

// ServeHTTP dispatches a request through the route table in routes.go.
//
// A request body is read under BodyTimeout (see boundBody), so that no client holds a
// connection without a bound.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hasBody(r) {
		boundBody(w, r, g.cfg.BodyTimeout)
	}
	g.mux.ServeHTTP(w, r)
}

// Validate reports every problem in the configuration at once, each prefixed by its YAML key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := checkURL(c.PublicURL); err != nil {
		add("public_url: %v", err)
	} else if u.Path != "" && u.Path != "/" {
		add("public_url: must be an origin without a path (got path %q)", u.Path)
	}
	if c.Upstream == "" && len(c.Routes) == 0 {
		add("upstream: required (or routes)")
	}
	errs = append(errs, c.defaultRoute().validate("")...)
	seen := make(map[string]int)
	for i, r := range c.Routes {
		errs = append(errs, r.validate(fmt.Sprintf("routes[%d].", i))...)
		key := hostOf(r.Host) + " " + strings.TrimSuffix(r.Path, "/")
		if j, ok := seen[key]; ok {
			add("routes[%d]: serves the same host and path as routes[%d]", i, j)
		}
		seen[key] = i
	}
	names := make(map[string]int)
	for i, r := range c.Routes {
		if j, ok := names[r.Name]; ok && r.Name != "" {
			add("routes[%d].name: %q is routes[%d]'s name too", i, r.Name, j)
		}
		names[r.Name] = i
	}
	if c.Headplane.Path != "" && c.Upstream == "" {
		add("headplane.path: Headplane must be the default route's upstream (set upstream)")
	}
	errs = append(errs, c.Assertion.validate()...)
	for i, d := range c.RedirectDomains {
		if d == "" || d == "." || strings.ContainsAny(d, "/:@*?# ") {
			add("redirect_domains[%d]: must be a host name or .suffix (got %q)", i, d)
		}
	}
	for i, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			add("trusted_proxies[%d]: %v", i, err)
		}
	}
	if c.UpstreamTimeout < 0 {
		add("upstream_timeout: must not be negative")
	}
	if c.BodyTimeout < 0 {
		add("body_timeout: must not be negative")
	}
	if u, err := checkURL(c.OIDC.Issuer); err != nil {
		add("oidc.issuer: %v", err)
	} else if u.RawQuery != "" || u.Fragment != "" {
		add("oidc.issuer: must not have a query or fragment")
	}
	if c.OIDC.ClientID == "" {
		add("oidc.client_id: required")
	}
	switch {
	case c.OIDC.ClientSecret != "" && c.OIDC.ClientSecretFile != "":
		add("oidc.client_secret: set either client_secret or client_secret_file, not both")
	case c.OIDC.ClientSecret == "" && c.OIDC.ClientSecretFile == "":
		add("oidc.client_secret: required (or client_secret_file)")
	}
	if len(c.OIDC.Scopes) > 0 && !slices.Contains(c.OIDC.Scopes, "openid") {
		add("oidc.scopes: must contain openid")
	}
	for k := range c.OIDC.AuthParams {
		switch k {
		case "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method":
			add("oidc.auth_params.%s: is set by headgate itself", k)
		}
	}
	if c.OIDC.Timeout < 0 {
		add("oidc.timeout: must not be negative")
	}
	errs = append(errs, c.Headplane.validate()...)
	return errors.Join(errs...)
}

// defaultRoute is the route the top-level keys describe.
func (c Config) defaultRoute() RouteConfig {
	return RouteConfig{Name: "default", Upstream: c.Upstream, PreserveHost: c.PreserveHost,
		SkipAuth: c.SkipAuth, SignOutPaths: c.SignOutPaths, Access: c.Access, Headers: c.Headers}
}

// checkURL parses an absolute http(s) URL with a host.
func checkURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an http or https URL (got %q)", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("must have a host (got %q)", s)
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials")
	}
	return u, nil
}
