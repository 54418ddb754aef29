package gateway

import (
	"bufio"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
)

// FuzzSafeRedirect checks the one property that matters: whatever rd is, the browser is sent to
// this gateway's origin or to an allowed host, never anywhere else. The target is resolved the
// way a browser resolves a Location header.
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{"/", "/admin?x=1#y", "//evil.com", "/\\evil.com", "https://evil.com",
		"https:evil.com", "/%2f%2fevil.com", "/\t/evil.com", "https://app.example.com/x", "\uff0f\uff0fevil.com",
		"https://gate.example.com@evil.com", "javascript:alert(1)"} {
		f.Add(seed)
	}
	g := &Gateway{cfg: Config{RedirectDomains: []string{"app.example.com"}}}
	g.public, _ = url.Parse("https://gate.example.com")
	f.Fuzz(func(t *testing.T, rd string) {
		got := g.safeRedirect(rd)
		if strings.ContainsAny(got, "\\\t\r\n\x00 ") {
			t.Fatalf("safeRedirect(%q) = %q: contains a separator browsers reinterpret", rd, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] >= 0x7f {
				t.Fatalf("safeRedirect(%q) = %q: contains non-ASCII", rd, got)
			}
		}
		target, err := g.public.Parse(got)
		if err != nil {
			t.Fatalf("safeRedirect(%q) = %q: does not parse: %v", rd, got, err)
		}
		if target.User != nil {
			t.Fatalf("safeRedirect(%q) = %q: carries userinfo", rd, got)
		}
		host := strings.ToLower(target.Hostname())
		if host != "gate.example.com" && host != "app.example.com" {
			t.Fatalf("safeRedirect(%q) = %q: leads to host %q", rd, got, target.Host)
		}
		if target.Scheme != "https" {
			t.Fatalf("safeRedirect(%q) = %q: scheme %q", rd, got, target.Scheme)
		}
	})
}

// FuzzStripOwnedHeaders checks that no spelling of an identity header survives stripping, and
// that headers headgate does not own are kept.
func FuzzStripOwnedHeaders(f *testing.F) {
	for _, seed := range []string{"X-Headscale-User", "x_headscale_user", "X-HEADSCALE-USER-ID", "Remote-User",
		"X-Forwarded-Email", "x-forwarded-preferred-username", "X-Auth-Request-Email", "Accept", "X-Forwarded-For"} {
		f.Add(seed)
	}
	identity := []string{"x-headscale-user", "x-headscale-user-id", "x-forwarded-user", "x-forwarded-email",
		"x-forwarded-preferred-username", "x-auth-request-user", "x-auth-request-email", "remote-user"}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"spoofed"}, "Accept": {"*/*"}}
		stripOwnedHeaders(h)
		normalized := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		for _, id := range identity {
			if normalized == id {
				if _, ok := h[name]; ok {
					t.Fatalf("identity header %q survived stripping", name)
				}
			}
		}
		if strings.EqualFold(name, "Accept") {
			return
		}
		if h.Get("Accept") != "*/*" {
			t.Fatalf("stripping %q removed Accept", name)
		}
		if !ownedHeader(name) {
			if _, ok := h[name]; !ok {
				t.Fatalf("header %q is not owned but was removed", name)
			}
		}
	})
}

// FuzzSkipAuth checks skip_auth against the ways other servers read a path: whenever headgate
// lets a request through without a session, the path a Tomcat-style server (path parameters
// dropped, decoded up to three times, "\" taken for "/", dot segments resolved) or an
// nginx-style server (decoded once, slashes merged, dot segments resolved) would serve must
// still be a skip_auth path. The oracle is differential: it does not trust headgate's notion
// of a plain path.
func FuzzSkipAuth(f *testing.F) {
	for _, seed := range []string{"/admin/healthz", "/admin/assets/app.js", "/admin/assets/..;/users",
		"/admin/assets/%2e%2e/users", "/admin/assets/%252e%252e/users", "/admin/assets/%5C..%5Cusers",
		"/admin/assets/%C0%AE%C0%AE/users", "/admin/assets/.;/../users", "/admin/healthz;x", "/admin/assets/x/..%2f..%2fusers"} {
		f.Add(seed)
	}
	rt := &route{skipAuth: []string{"/admin/healthz", "/admin/assets/"}}
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + raw + " HTTP/1.1\r\nHost: gate\r\n\r\n")))
		if err != nil || req.URL.Path == "" || path.Clean(req.URL.Path) != strings.TrimSuffix(req.URL.Path, "/") && path.Clean(req.URL.Path) != req.URL.Path {
			return // refused by the server, or redirected to the clean path by the mux
		}
		if !rt.skips(req) {
			return
		}
		p, _, _ := strings.Cut(raw, "?")
		for name, seen := range map[string]string{"tomcat": tomcatPath(p), "nginx": nginxPath(p)} {
			if !skipped(rt.skipAuth, seen) {
				t.Fatalf("%q skips authentication, but a %s-style server serves %q", raw, name, seen)
			}
		}
	})
}

// skipped reports whether p is one of the skip_auth entries, read as the README says.
func skipped(entries []string, p string) bool {
	for _, e := range entries {
		if strings.HasSuffix(e, "/") && strings.HasPrefix(p, e) || p == e {
			return true
		}
	}
	return false
}

// tomcatPath reads p as servlet containers have: each segment loses its ";" parameters, the
// path is percent-decoded up to three times, "\" counts as "/", and dot segments are resolved.
func tomcatPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	p = strings.Join(segs, "/")
	for range 3 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ReplaceAll(p, "\\", "/")
	return resolveDots(p)
}

// nginxPath reads p as nginx does: decoded once, slashes merged, dot segments resolved.
func nginxPath(p string) string {
	if d, err := url.PathUnescape(p); err == nil {
		p = d
	}
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return resolveDots(p)
}

// resolveDots resolves "." and ".." segments, keeping a trailing slash.
func resolveDots(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// FuzzRouteMatch: whatever path a request carries, if a Tomcat-style or an nginx-style
// upstream would serve it under a route's prefix (read without case), that route's rules apply
// to it: it is the route chosen or one whose rules the request must also satisfy. The oracle is
// differential, as FuzzSkipAuth's.
func FuzzRouteMatch(f *testing.F) {
	for _, seed := range []string{"/admin", "/admin/users", "/Admin/users", "/public/..;/admin", "/public/%2e%2e/admin",
		"/public%2f..%2fadmin", "/public/%252e%252e/admin", "/admin;x/users", "/public\\..\\admin", "/x/%2E%2E/ADMIN/"} {
		f.Add(seed)
	}
	admin := &route{name: "admin", path: "/admin"}
	table := newRouteTable([]*route{admin, {name: "public", path: "/public"}}, &route{name: "default"})
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + raw + " HTTP/1.1\r\nHost: gate\r\n\r\n")))
		if err != nil || req.URL.Path == "" || req.URL.Opaque != "" {
			return // refused by the server
		}
		chosen, also := table.match(req.Host, req.URL.Path, req.URL.EscapedPath())
		if chosen == admin || slices.Contains(also, admin) {
			return
		}
		p, _, _ := strings.Cut(raw, "?")
		for name, seen := range map[string]string{"tomcat": tomcatPath(p), "nginx": nginxPath(p)} {
			if underPrefix(seen, "/admin", true) {
				t.Fatalf("%q escapes /admin's rules (route %s, also %d), but a %s-style server serves %q", raw, chosen.name, len(also), name, seen)
			}
		}
	})
}
