package session

import (
	"net/http"
	"strings"
)

// cookieValues returns the values of every cookie called name in the request's Cookie headers,
// in order, appended to dst.
//
// It is Request.CookiesNamed without validating each value byte and without building an
// http.Cookie per cookie, which made up four fifths of opening a cached session cookie. Values
// need no validation here: they are only compared with verified values or handed to
// securecookie, which rejects anything it did not seal.
func cookieValues(dst []string, h http.Header, name string) []string {
	for _, line := range h["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.Trim(part, " \t")
			n, v, ok := strings.Cut(part, "=")
			if !ok || n != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			dst = append(dst, v)
		}
	}
	return dst
}

// StripOwn removes the gateway's cookies (see IsOwn) from the Cookie headers in h, keeping every
// other cookie in order: the upstream has no use for them and must not be able to replay them.
// The header is rewritten only when it held one of them.
func (c *Cookies) StripOwn(h http.Header) {
	lines := h["Cookie"]
	var kept []string
	changed := false
	for _, line := range lines {
		var parts []string
		for part := range strings.SplitSeq(line, ";") {
			part = strings.Trim(part, " \t")
			if name, _, _ := strings.Cut(part, "="); c.IsOwn(name) {
				changed = true
				continue
			}
			parts = append(parts, part)
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = kept
	}
}
