package linker

import (
	"net/url"
	"strings"
)

// ProviderID returns the providerId Headscale (0.24 and later) gives the user it creates for an
// OIDC identity: the issuer without a trailing slash and the subject without a leading slash,
// joined by one slash, then cleaned as Headscale 0.26 and later clean it. An empty issuer or
// subject yields the other one cleaned; both empty yield "".
func ProviderID(issuer, subject string) string {
	switch {
	case issuer == "" && subject == "":
		return ""
	case issuer == "":
		return cleanProviderID(subject)
	case subject == "":
		return cleanProviderID(issuer)
	}
	return cleanProviderID(strings.TrimSuffix(issuer, "/") + "/" + strings.TrimPrefix(subject, "/"))
}

// cleanProviderID returns s in the form Headscale stores since 0.26, which also migrated the
// values 0.24 and 0.25 stored uncleaned. Surrounding whitespace goes. A string net/url parses
// with a scheme keeps its scheme (lower-cased), host, query and fragment, its path is reduced to
// its non-empty whitespace-trimmed segments, and it is re-encoded by url.URL.String. Anything
// else is reduced to its non-empty trimmed segments joined by single slashes.
//
// Headscale's quirks are kept on purpose, since a match needs both sides to agree byte for byte:
// a control character inside makes the URL unparsable, so "https://x/a\nb" is cleaned as a plain
// path ("https:/x/a\nb"), and re-encoding escapes what the path may not hold ("a|b" becomes
// "a%7Cb").
func cleanProviderID(s string) string {
	if isCleanURL(s) {
		return s
	}
	return cleanSlow(s)
}

// cleanSlow is cleanProviderID without the shortcut for strings that are already clean.
func cleanSlow(s string) string {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		u.Path = joinSegments(u.Path, true)
		u.Scheme = strings.ToLower(u.Scheme)
		return u.String()
	}
	return joinSegments(s, false)
}

// joinSegments joins the non-empty whitespace-trimmed segments of the slash-separated path p
// with single slashes, with a leading slash when rooted is set and there is any segment.
func joinSegments(p string, rooted bool) string {
	var b strings.Builder
	b.Grow(len(p))
	for seg := range strings.SplitSeq(p, "/") {
		if seg = strings.TrimSpace(seg); seg == "" {
			continue
		}
		if rooted || b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// isCleanURL reports, without allocating, whether s is a URL that cleanProviderID would return
// unchanged: a lower-case scheme, "://", a host of letters, digits, dots and hyphens with an
// optional numeric port, then zero or more "/segment" where each segment is non-empty and made of
// unreserved characters (RFC 3986) only. This covers the providerIds of common identity
// providers, so indexing a large user list mostly skips url.Parse. It may say false for a
// clean string; it never says true for one that cleaning would change.
func isCleanURL(s string) bool {
	i := 0
	for i < len(s) && (isLower(s[i]) || i > 0 && (isDigit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')) {
		i++
	}
	if i == 0 || !strings.HasPrefix(s[i:], "://") {
		return false
	}
	i += len("://")
	host := i
	for i < len(s) && (isLower(s[i]) || isUpper(s[i]) || isDigit(s[i]) || s[i] == '.' || s[i] == '-') {
		i++
	}
	if i == host {
		return false
	}
	if i < len(s) && s[i] == ':' {
		i++
		port := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == port {
			return false
		}
	}
	for i < len(s) {
		if s[i] != '/' {
			return false
		}
		i++
		seg := i
		for i < len(s) && isUnreserved(s[i]) {
			i++
		}
		if i == seg {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isUnreserved(c byte) bool {
	return isLower(c) || isUpper(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'
}
