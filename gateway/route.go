package gateway

import (
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strings"
)

// RouteConfig is one upstream behind headgate and what applies to it. The top-level upstream,
// skip_auth, sign_out_paths, preserve_host, unlinked, access and headers keys form the default
// route, which takes every request no entry of routes takes.
type RouteConfig struct {
	// Name identifies the route in logs and metrics, and is the audience of its identity
	// assertions. Default: host and path, such as "grafana.example.com/" ("default" for the
	// default route).
	Name string `yaml:"name"`

	// Host is the host name the route serves, compared without case and port. Empty: every
	// host.
	Host string `yaml:"host"`

	// Path is the path prefix the route serves, by whole segments: "/grafana" serves /grafana
	// and everything below it, not /grafanas. Default "/".
	Path string `yaml:"path"`

	// Upstream is the http(s) URL the route's requests are proxied to. Required.
	Upstream string `yaml:"upstream"`

	// PreserveHost keeps the browser's Host header on proxied requests. Default true (see the
	// top-level preserve_host).
	PreserveHost *bool `yaml:"preserve_host"`

	// SkipAuth and SignOutPaths are as the top-level keys of the same names, for this route's
	// host.
	SkipAuth     []string `yaml:"skip_auth"`
	SignOutPaths []string `yaml:"sign_out_paths"`

	// Unlinked is deny or allow: whether a signed-in person without a Headscale user may use
	// the route. Default: link.unlinked.
	Unlinked string `yaml:"unlinked"`

	// Access says who may use the route. Default: everyone with a proven identity.
	Access AccessConfig `yaml:"access"`

	// FromTailnet says how a request for the route that arrives on the tailnet listener (see
	// TailnetConfig) is signed in: device, as the Headscale user who owns the sending device,
	// or sign_in, at the identity provider as on the public listener (the request is sent to
	// the public URL), for a route where a device is not proof enough, such as Headplane for
	// its owner. Default device.
	FromTailnet string `yaml:"from_tailnet"`

	// Headers sets further identity headers on the route's requests, by name, such as
	// X-WEBAUTH-USER: headscale_user for Grafana and Gitea. A value is one of headscale_user,
	// headscale_user_id, email (verified only), subject, preferred_username, groups (the IdP's)
	// and headscale_groups. Whatever a client sends under these names is removed first, on
	// every route.
	Headers map[string]string `yaml:"headers"`
}

// identityValues are what RouteConfig.Headers may set.
var identityValues = []string{"headscale_user", "headscale_user_id", "email", "subject", "preferred_username", "groups", "headscale_groups"}

// validate reports every problem of the route, each prefixed by prefix (its YAML path; "" for
// the default route, whose keys are top-level).
func (c RouteConfig) validate(prefix string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(prefix+format, args...)) }
	// The default route may be left out when routes serve everything.
	if prefix != "" || c.Upstream != "" {
		if _, err := checkURL(c.Upstream); err != nil {
			add("upstream: %v", err)
		}
	}
	if c.FromTailnet != "" && c.FromTailnet != fromTailnetDevice && c.FromTailnet != fromTailnetSignIn {
		add("from_tailnet: must be %s or %s (got %q)", fromTailnetDevice, fromTailnetSignIn, c.FromTailnet)
	}
	if c.Host != "" && !validHost(c.Host) {
		add("host: %q is not a host name (no scheme, port, path or wildcard)", c.Host)
	}
	if c.Path != "" && (!plainPath(c.Path) || strings.HasPrefix(c.Path, "/oauth2/") || c.Path == "/oauth2") {
		add("path: must be a plain path starting with /, outside /oauth2/ (got %q)", c.Path)
	}
	switch c.Unlinked {
	case "", "deny", "allow":
	default:
		add("unlinked: must be deny or allow (got %q)", c.Unlinked)
	}
	for i, p := range c.SkipAuth {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#%\\ \t") {
			add("skip_auth[%d]: must be a plain path starting with / (got %q)", i, p)
		} else if strings.HasPrefix(p, "/oauth2/") || p == "/oauth2" || p == "/" {
			add("skip_auth[%d]: %q would expose headgate's own or every path", i, p)
		}
	}
	for i, p := range c.SignOutPaths {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/oauth2/") || strings.ContainsAny(p, "?#%\\ \t{}") {
			add("sign_out_paths[%d]: must be a plain path outside /oauth2/ (got %q)", i, p)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		if !validHeaderName(name) || slices.Contains(reservedHeaders, canonicalHeader(name)) {
			add("headers: %q cannot carry an identity", name)
		} else if v := c.Headers[name]; !slices.Contains(identityValues, v) {
			add("headers.%s: must be one of %s (got %q)", name, strings.Join(identityValues, ", "), v)
		}
	}
	errs = append(errs, c.Access.Validate(prefix+"access")...)
	return errs
}

// reservedHeaders are names that mean something else to HTTP or to the upstream's session.
var reservedHeaders = []string{"Host", "Connection", "Content-Length", "Content-Type", "Transfer-Encoding",
	"Te", "Trailer", "Upgrade", "Cookie", "Authorization", "Proxy-Authorization", "Keep-Alive"}

// validHost reports whether h is a bare host name: no scheme, port, path or wildcard.
func validHost(h string) bool {
	return h != "" && !strings.ContainsAny(h, "/:*?#@ \t[]%")
}

// validHeaderName reports whether name is an HTTP header field name (a token).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// route is a RouteConfig made ready to serve, once, at start.
type route struct {
	name     string
	host     string // lower case, "" for every host
	path     string // without a trailing "/"; "" for "/"
	upstream *url.URL

	preserveHost  bool
	skipAuth      []string
	signOutPaths  []string
	allowUnlinked bool
	access        *access
	// headers are the further identity headers: canonical name and value.
	headers [][2]string
	// assertionHeader is the canonical name of Assertion.Header, "" without assertions.
	assertionHeader string
	// deviceEnough: on the tailnet listener, the device's owner is let in without the
	// identity provider's sign-in (RouteConfig.FromTailnet).
	deviceEnough bool
}

// newRoute makes c ready to serve; c has passed validate.
func (g *Gateway) newRoute(c RouteConfig) *route {
	u, _ := url.Parse(c.Upstream)
	r := &route{
		assertionHeader: canonicalHeader(g.cfg.Assertion.Header),
		name:            c.Name,
		host:            hostOf(c.Host),
		path:            strings.TrimSuffix(c.Path, "/"),
		upstream:        u,
		preserveHost:    c.PreserveHost == nil || *c.PreserveHost,
		skipAuth:        c.SkipAuth,
		signOutPaths:    c.SignOutPaths,
		allowUnlinked:   c.Unlinked == "allow" || c.Unlinked == "" && g.links.AllowUnlinked(),
		access:          newAccess(c.Access),
		deviceEnough:    c.FromTailnet != fromTailnetSignIn,
	}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		r.headers = append(r.headers, [2]string{canonicalHeader(name), c.Headers[name]})
		if lower := strings.ToLower(name); !ownedHeader(lower) && !slices.Contains(g.extraHeaders, lower) {
			g.extraHeaders = append(g.extraHeaders, lower)
		}
	}
	return r
}

// buildRoutes makes the default route and Routes ready and sorts them into the table.
func (g *Gateway) buildRoutes() {
	if g.cfg.Upstream != "" {
		g.def = g.newRoute(g.cfg.defaultRoute())
		if g.hpPath != "" {
			g.def.signOutPaths = append(slices.Clip(g.def.signOutPaths), g.hpPath+"/logout")
		}
	}
	var routes []*route
	for _, c := range g.cfg.Routes {
		routes = append(routes, g.newRoute(c))
	}
	g.table = newRouteTable(routes, g.def)
	g.base = g.def
	if g.base == nil {
		g.base = &route{name: "default", allowUnlinked: g.links.AllowUnlinked(), access: newAccess(AccessConfig{}),
			assertionHeader: canonicalHeader(g.cfg.Assertion.Header)}
	}
}

// anyRouteAllowsUnlinked reports whether some route lets in a person without a Headscale
// user, so that such a person may sign in at all.
func (g *Gateway) anyRouteAllowsUnlinked() bool {
	if g.base.allowUnlinked {
		return true
	}
	return slices.ContainsFunc(g.table.every, func(r *route) bool { return r.allowUnlinked })
}

// forwardedRoute returns the route a forward-auth check is for, and the routes whose rules it
// must also satisfy (see routeTable.match). Only a trusted proxy can say which request it
// checks: X-Forwarded-Host (else the check's own Host) and X-Forwarded-Uri, as Traefik and
// Caddy send them, or X-Original-URI, as the README's nginx recipe does. A check from anyone
// else, or that names no request, must satisfy the rules of every route.
func (g *Gateway) forwardedRoute(r *http.Request) (*route, []*route) {
	if host, uri, ok := g.checkedRequest(r); ok {
		if u, err := url.ParseRequestURI(uri); err == nil {
			if rt, also := g.table.matchURL(host, u); rt != nil {
				return rt, also
			}
		}
	}
	return g.base, g.table.every
}

// checkedRequest returns the host and request URI of the request a forward-auth check is for,
// as a trusted proxy names them: X-Forwarded-Host (else the check's own Host), and
// X-Forwarded-Uri or X-Original-URI. ok is false when the check is not from a trusted proxy or
// names no URI.
func (g *Gateway) checkedRequest(r *http.Request) (host, uri string, ok bool) {
	if !g.fromTrustedProxy(r) {
		return "", "", false
	}
	uri = r.Header.Get("X-Forwarded-Uri")
	if uri == "" {
		uri = r.Header.Get("X-Original-Uri")
	}
	host = r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	return host, uri, uri != ""
}

// routeTable chooses the route of a request.
type routeTable struct {
	byHost  map[string][]*route // the routes naming a host, by host, longest path first
	anyHost []*route            // the routes for every host, longest path first
	def     *route              // nil: no default route, requests no route takes get a 404
	every   []*route            // every route but the default one
}

// newRouteTable sorts routes into a table.
func newRouteTable(routes []*route, def *route) *routeTable {
	t := &routeTable{byHost: make(map[string][]*route), def: def}
	for _, r := range routes {
		if r.host == "" {
			t.anyHost = append(t.anyHost, r)
		} else {
			t.byHost[r.host] = append(t.byHost[r.host], r)
		}
	}
	t.every = routes
	longestFirst := func(a, b *route) int { return len(b.path) - len(a.path) }
	slices.SortStableFunc(t.anyHost, longestFirst)
	for _, rs := range t.byHost {
		slices.SortStableFunc(rs, longestFirst)
	}
	return t
}

// hostOf returns the host of a Host header value in lower case, without port and trailing dot.
// It allocates only for a name that is not lower case already: it runs on every request.
func hostOf(hostport string) string {
	h := hostport
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// match returns the route that serves a request for host and path (decoded, and raw as it
// was on the wire), and the routes whose rules it must also satisfy. Routes naming the host
// are considered first; only when none does are the routes for every host. Of those, the one
// with the longest prefix of the cleaned, decoded path, compared exactly, serves the request. A
// request that another of them could be read to be for (its prefix matches when case is
// ignored, or the path as decoded but not cleaned, or as encoded on the wire) must satisfy that
// route's rules too, so that no spelling of a path lets it past a stricter route to an
// upstream that reads paths its own way.
func (t *routeTable) match(host, decoded, raw string) (chosen *route, also []*route) {
	h := hostOf(host)
	routes := t.byHost[h]
	if len(routes) == 0 {
		routes = t.anyHost
	}
	clean := decoded
	if !strings.HasPrefix(clean, "/") {
		clean = "/" + clean
	}
	clean = path.Clean(clean)  // allocates only when it changes the path
	var others []string        // computed once, for the first route that is not chosen
	for _, r := range routes { // longest path first
		if chosen == nil && underPrefix(clean, r.path, false) {
			chosen = r
			continue
		}
		if others == nil {
			others = readings(clean, raw)
		}
		if slices.ContainsFunc(others, func(p string) bool { return underPrefix(p, r.path, true) }) {
			also = append(also, r)
		}
	}
	if chosen == nil {
		chosen = t.def
	}
	return chosen, also
}

// readings returns the paths some upstream might take a request's path for: the cleaned,
// decoded path headgate routes by; the path as it came on the wire, decoded once, twice and
// three times; each also with path parameters (";...") dropped from its segments, "\" read as
// "/", and dot segments resolved with slashes merged. A plain path (see plainPath) has one
// reading, itself.
func readings(clean, raw string) []string {
	if plainPath(raw) {
		return []string{raw}
	}
	out := []string{clean}
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	forms := []string{raw}
	for p := raw; len(forms) < 4; {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		forms, p = append(forms, d), d
	}
	for _, f := range forms {
		for _, p := range []string{f, dropParams(f)} {
			add(p)
			slashed := strings.ReplaceAll(p, "\\", "/")
			add(slashed)
			add(path.Clean("/" + slashed))
		}
	}
	return out
}

// dropParams removes the path parameters (";..." up to the next "/") of every segment of p,
// as Tomcat and Spring read a path.
func dropParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

// matchURL is match for a request's URL. With the default route alone it reads nothing of u,
// so a gateway without routes pays nothing for them on the request path.
func (t *routeTable) matchURL(host string, u *url.URL) (*route, []*route) {
	if len(t.every) == 0 {
		return t.def, nil
	}
	return t.match(host, u.Path, u.EscapedPath())
}

// underPrefix reports whether p is prefix or below it by whole segments; fold ignores ASCII
// case. An empty prefix is "/" and holds every path.
func underPrefix(p, prefix string, fold bool) bool {
	if prefix == "" {
		return true
	}
	if len(p) < len(prefix) {
		return false
	}
	head := p[:len(prefix)]
	if !(head == prefix || fold && asciiEqualFold(head, prefix)) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// headerValue returns the value of an identity header p has, or "".
func (p principal) headerValue(what string) string {
	switch what {
	case "headscale_user":
		return p.link.UserName
	case "headscale_user_id":
		return p.link.UserID
	case "email":
		if p.session.EmailVerified {
			return p.session.Email
		}
	case "subject":
		return p.session.Subject
	case "preferred_username":
		return p.session.PreferredUsername
	case "groups":
		return groupsHeader(p.session.Groups)
	case "headscale_groups":
		return groupsHeader(p.headscaleGroups)
	}
	return ""
}

// canonicalHeader returns name as net/http keys it.
func canonicalHeader(name string) string { return textproto.CanonicalMIMEHeaderKey(name) }
