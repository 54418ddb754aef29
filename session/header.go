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
