package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"headgate/linker"
	"headgate/session"
)

// benchPrincipal is a typical signed-in, linked person.
var benchPrincipal = principal{
	session: &session.Session{
		ID: "0123456789abcdef", Issuer: "https://idp.example.com", Subject: "CiRjMGExNmU4Ni1hYmNkLTRlZjAtYjEyMy0xMjM0NTY3ODkwYWISBWxvY2Fs",
		Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
	},
	link: linker.Link{UserID: "1", UserName: "alice", Method: "provider_id"},
}

// browserHeader is what a browser typically sends, plus one spoofing attempt.
func browserHeader() http.Header {
	return http.Header{
		"Accept":           {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Accept-Encoding":  {"gzip, deflate, br"},
		"Accept-Language":  {"en-GB,en;q=0.9"},
		"User-Agent":       {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"},
		"Cookie":           {"theme=dark; _headgate=MTcwMDAwMDAwMHxabc; other=1"},
		"Sec-Fetch-Mode":   {"navigate"},
		"X-Headscale-User": {"root"},
	}
}

func BenchmarkStripOwnedHeaders(b *testing.B) {
	b.ReportAllocs()
	h := browserHeader()
	for b.Loop() {
		stripOwnedHeaders(h)
		h["X-Headscale-User"] = []string{"root"}
	}
}

func BenchmarkSetIdentityHeaders(b *testing.B) {
	b.ReportAllocs()
	h := http.Header{}
	for b.Loop() {
		setIdentityHeaders(h, benchPrincipal)
	}
}

// BenchmarkRewrite measures the proxy's Rewrite hook: set the URL, keep Host, X-Forwarded-*,
// strip owned headers and cookies, set the identity.
func BenchmarkRewrite(b *testing.B) {
	b.ReportAllocs()
	cookies, err := session.NewCookies(session.Config{Secret: session.Secrets{"0123456789abcdef0123456789abcdef"}}, false)
	if err != nil {
		b.Fatal(err)
	}
	g := &Gateway{cookies: cookies, cfg: Config{Upstream: "http://127.0.0.1:3000"}, upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:3000"}}
	rewrite := g.newProxy().Rewrite
	in := httptest.NewRequest(http.MethodGet, "http://gate.example.com/admin/machines", nil)
	in = in.WithContext(context.WithValue(in.Context(), principalKey{}, benchPrincipal))
	for b.Loop() {
		in.Header = browserHeader()
		out := in.Clone(in.Context())
		rewrite(&httputil.ProxyRequest{In: in, Out: out})
	}
}
