package gateway

import (
	"net/url"
	"strings"
)

// safeRedirect returns where a browser may be sent after sign-in or sign-out: rd itself when it
// is a path on the gateway's own origin (or an absolute URL on that origin or on one of
// RedirectDomains), "/" otherwise. The check is strict on purpose: anything a browser or an
// upstream might read as another origin (a second slash or backslash, whitespace or control
// characters, encoded separators, userinfo, non-ASCII look-alikes) is refused, since a valid
// return target never needs them.
func (g *Gateway) safeRedirect(rd string) string {
	if rd == "" || len(rd) > 2048 {
		return "/"
	}
	for i := 0; i < len(rd); i++ {
		c := rd[i]
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	lower := strings.ToLower(rd)
	for _, bad := range []string{"%2f", "%5c", "%00", "%09", "%0a", "%0d", "%20", "%e3%80%82", "%ef%bc"} {
		if strings.Contains(lower, bad) {
			return "/"
		}
	}
	if strings.HasPrefix(rd, "/") {
		if strings.HasPrefix(rd, "//") {
			return "/"
		}
		u, err := url.Parse(rd)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			return "/"
		}
		return rd
	}
	u, err := url.Parse(rd)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host == "" || strings.HasPrefix(u.Host, ".") || strings.HasSuffix(u.Host, ":") {
		return "/"
	}
	if !strings.HasPrefix(lower, u.Scheme+"://") {
		return "/"
	}
	if u.Scheme == g.public.Scheme && strings.EqualFold(u.Host, g.public.Host) {
		return g.samePath(u)
	}
	if !g.redirectHostAllowed(u) {
		return "/"
	}
	return u.String()
}

// samePath turns an absolute URL on the gateway's own origin into its path, query and fragment.
func (g *Gateway) samePath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if strings.HasPrefix(p, "//") {
		return "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		p += "#" + u.EscapedFragment()
	}
	return p
}

// redirectHostAllowed reports whether u's host is one of the configured redirect domains. Only
// https targets are allowed, unless the gateway itself is served over plain http.
func (g *Gateway) redirectHostAllowed(u *url.URL) bool {
	if u.Scheme != "https" && !(u.Scheme == "http" && g.public.Scheme == "http") {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return false
	}
	for _, d := range g.cfg.RedirectDomains {
		d = strings.ToLower(d)
		if strings.HasPrefix(d, ".") {
			if strings.HasSuffix(host, d) && len(host) > len(d) {
				return true
			}
		} else if host == d {
			return true
		}
	}
	return false
}
