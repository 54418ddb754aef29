package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// maxGroupBytes bounds the groups a session keeps, all names together: they travel in the
// session cookie, which browsers cap at about 4 KiB.
const maxGroupBytes = 2048

// claimGroups reads the groups in the claim at path of a token's (or userinfo's) claims. path
// is a claim name, or a dotted path into nested objects (Keycloak's realm_access.roles); a name
// that itself holds dots (an Auth0 namespaced claim such as https://example.com/groups) is
// tried whole first. The value may be a list of strings or one string. The groups come back
// sorted, each once; present says whether the claim was there at all.
func claimGroups(claims map[string]json.RawMessage, path string) (groups []string, present bool, err error) {
	raw, ok := claims[path]
	if !ok {
		raw, ok = nestedClaim(claims, path)
	}
	if !ok || string(raw) == "null" {
		return nil, false, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, true, nil
		}
		return []string{one}, true, nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, true, fmt.Errorf("claim %s: not a list of strings", path)
	}
	size := 0
	for _, m := range many {
		var g string
		if json.Unmarshal(m, &g) != nil || g == "" {
			continue // a number or an object is not a group name
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
			size += len(g)
		}
	}
	if size > maxGroupBytes {
		return nil, true, fmt.Errorf("claim %s: %d groups of %d bytes, over the %d bytes a session keeps", path, len(groups), size, maxGroupBytes)
	}
	slices.Sort(groups)
	return groups, true, nil
}

// nestedClaim follows a dotted path through nested JSON objects. A key may itself hold dots
// (a Keycloak client ID such as headgate.example.com): every way of cutting the path is tried,
// the shortest key first.
func nestedClaim(claims map[string]json.RawMessage, path string) (json.RawMessage, bool) {
	for i := range len(path) {
		if path[i] != '.' {
			continue
		}
		raw, ok := claims[path[:i]]
		if !ok {
			continue
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(raw, &inner) != nil {
			continue
		}
		if v, ok := inner[path[i+1:]]; ok {
			return v, true
		}
		if v, ok := nestedClaim(inner, path[i+1:]); ok {
			return v, true
		}
	}
	return nil, false
}

// groupsHeader writes groups as one header value that no group name can confuse: the names
// joined by commas, each percent-encoded except letters, digits and "-._~:@/". A name holding a
// comma, a percent sign, a space or a byte a header cannot carry arrives whole after splitting
// on commas and percent-decoding each part (url.PathUnescape in Go).
func groupsHeader(groups []string) string {
	n := len(groups)
	for _, g := range groups {
		for j := 0; j < len(g); j++ {
			if groupByteEscaped(g[j]) {
				n += 3
			} else {
				n++
			}
		}
	}
	var b strings.Builder
	b.Grow(n) // the one allocation: this runs on every request of a person with groups
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		for j := 0; j < len(g); j++ {
			if c := g[j]; groupByteEscaped(c) {
				b.WriteByte('%')
				b.WriteByte(upperHex[c>>4])
				b.WriteByte(upperHex[c&15])
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// groupByteEscaped reports whether groupsHeader percent-encodes c.
func groupByteEscaped(c byte) bool {
	return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:@/", c) >= 0)
}
