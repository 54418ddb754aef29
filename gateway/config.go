package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
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

	// FromTailnet says how a request for the default route that arrives on the tailnet
	// listener is signed in (see RouteConfig.FromTailnet). Default device.
	FromTailnet string `yaml:"from_tailnet"`

	// Tailnet puts headgate on the tailnet as a node of its own, whose requests are signed in
	// by the device that sends them. Off unless tailnet.control_url is set.
	Tailnet TailnetConfig `yaml:"tailnet"`

	// Routes puts further upstreams behind headgate, each chosen by host and path prefix and
	// with rules of its own. One sign-in covers them all (within the session cookie's scope).
	Routes []RouteConfig `yaml:"routes"`

	// Assertion adds a signed identity assertion to every authenticated request.
	Assertion AssertionConfig `yaml:"assertion"`

	// OIDC is the identity provider headgate signs users in with.
	OIDC OIDCConfig `yaml:"oidc"`

	// Headplane says where the upstream serves Headplane, for what headgate does for it.
	Headplane HeadplaneConfig `yaml:"headplane"`

	// AccessLog logs one line per request, after its answer, at info level and in the log's
	// format: method, path (never the query, which may hold a code or a token), status, bytes
	// of the answer's body, duration, request ID, the upstream route, and the person's subject
	// and Headscale user once their session is proven. It also gives every request an ID,
	// passed upstream as X-Request-Id: a trusted proxy's (TrustedProxies) is kept, anyone
	// else's is replaced. Default false.
	AccessLog bool `yaml:"access_log"`
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

	// StartTimeout bounds how long a sign-in waits, before the browser is sent to the provider,
	// for discovery or for the check that the provider answers. A provider slower than this
	// gets headgate's "Identity provider unreachable" page with a button to try again, while a
	// discovery under way goes on for up to Timeout for the next sign-in. Default 3s; it never
	// waits longer than Timeout.
	StartTimeout time.Duration `yaml:"start_timeout"`

	// SignOutAtProvider makes a sign-out also end the person's session at the provider
	// (OpenID Connect RP-Initiated Logout) when its discovery document names an
	// end_session_endpoint: the browser is sent there and comes back to PublicURL +
	// "/oauth2/signed_out", which must be registered at the provider as a post-logout redirect
	// URI. Default false: the provider's session stays, and signing in again needs no password.
	SignOutAtProvider bool `yaml:"sign_out_at_provider"`

	// LogoutTokenMaxAge makes headgate accept back-channel logout tokens that carry no exp
	// claim, as Ory Hydra v2 sends them, when their iat is no older than this (and no more than
	// a minute ahead of headgate's clock); each such token is remembered for this long, so it is
	// still accepted once. Everything else is checked as for any logout token. Default 0: a
	// token without exp is refused, as OpenID Connect Back-Channel Logout 1.0 requires exp.
	LogoutTokenMaxAge time.Duration `yaml:"logout_token_max_age"`
}

// Defaults that SetDefaults applies to zero fields.
const (
	defaultUpstreamTimeout = 30 * time.Second
	defaultBodyTimeout     = 30 * time.Second
	defaultOIDCTimeout     = 10 * time.Second
	defaultStartTimeout    = 3 * time.Second
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
	if c.OIDC.StartTimeout == 0 {
		c.OIDC.StartTimeout = defaultStartTimeout
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
	c.Tailnet.setDefaults()
	if c.Headplane.Path != "" && c.Headplane.LinkAtSignIn == nil {
		c.Headplane.LinkAtSignIn = new(true)
	}
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
	errs = append(errs, c.Tailnet.validate()...)
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
	if c.OIDC.StartTimeout < 0 {
		add("oidc.start_timeout: must not be negative")
	}
	if c.OIDC.LogoutTokenMaxAge < 0 || c.OIDC.LogoutTokenMaxAge > time.Hour {
		add("oidc.logout_token_max_age: must be between 0 (refuse tokens without exp) and 1h")
	}
	errs = append(errs, c.Headplane.validate()...)
	return errors.Join(errs...)
}

// defaultRoute is the route the top-level keys describe.
func (c Config) defaultRoute() RouteConfig {
	return RouteConfig{Name: "default", Upstream: c.Upstream, PreserveHost: c.PreserveHost,
		SkipAuth: c.SkipAuth, SignOutPaths: c.SignOutPaths, Access: c.Access, Headers: c.Headers, FromTailnet: c.FromTailnet}
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
