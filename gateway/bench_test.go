package gateway

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
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
// benchRoute is a default route without further headers.
var benchRoute = &route{name: "default", access: newAccess(AccessConfig{})}

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
		setIdentityHeaders(h, benchPrincipal, benchRoute, false)
	}
}

// BenchmarkRewrite measures the proxy's Rewrite hook: set the URL, keep Host, X-Forwarded-*,
// strip owned headers and cookies, set the identity.
func BenchmarkRewrite(b *testing.B) {
	b.ReportAllocs()
	cookies, err := session.NewCookies(defaulted(session.Config{Secret: session.Secrets{"0123456789abcdef0123456789abcdef"}}), false)
	if err != nil {
		b.Fatal(err)
	}
	g := &Gateway{cookies: cookies, cfg: Config{Upstream: "http://127.0.0.1:3000"}}
	rewrite := g.newProxy().Rewrite
	in := httptest.NewRequest(http.MethodGet, "http://gate.example.com/admin/machines", nil)
	rt := &route{name: "default", upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:3000"}, preserveHost: true}
	in = in.WithContext(context.WithValue(in.Context(), proxyKey{}, &proxied{route: rt, authenticated: true, principal: benchPrincipal}))
	for b.Loop() {
		in.Header = browserHeader()
		out := in.Clone(in.Context())
		rewrite(&httputil.ProxyRequest{In: in, Out: out})
	}
}

// benchGateway returns a gateway proxying to a real upstream over loopback, and the Cookie
// header value of a signed-in, linked session.
func benchGateway(b *testing.B) (*Gateway, string, *httptest.Server) {
	return benchGatewayWith(b, false)
}

// benchGatewayWith is benchGateway; with authz, the request goes through a route with access
// rules (IdP and Headscale groups), further headers and a signed assertion, for a person with
// IdP groups and Headscale policy groups.
func benchGatewayWith(b *testing.B, authz bool) (*Gateway, string, *httptest.Server) {
	return benchGatewayLogged(b, authz, nil)
}

// benchGatewayLogged is benchGatewayWith; with log not nil, the gateway writes its access log
// there.
func benchGatewayLogged(b *testing.B, authz bool, log *slog.Logger) (*Gateway, string, *httptest.Server) {
	b.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	b.Cleanup(upstream.Close)
	hs := newHeadscaleDouble(b)
	hs.addUser("1", "alice", "alice@example.com", "https://idp.example.com/alice-sub")
	cookies, err := session.NewCookies(defaulted(session.Config{Secret: session.Secrets{"0123456789abcdef0123456789abcdef"}}), false)
	if err != nil {
		b.Fatal(err)
	}
	store := session.NewMemoryStore(session.DefaultTiming())
	headscale := linker.NewHeadscale(defaulted(linker.HeadscaleConfig{URL: hs.srv.URL, APIKey: hs.key}), nil)
	links := linker.New(defaulted(linker.Config{}), headscale, linker.NewMemoryCache(linker.Timing{}), linker.Timing{})
	cfg := Config{
		PublicURL: "http://gate.example.com", Upstream: upstream.URL,
		OIDC: OIDCConfig{Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: "s"},
	}
	var groups *linker.PolicyGroups
	var groupNames []string
	if authz {
		hs.set(func(h *headscaleDouble) {
			h.policy = `{"groups": {"group:admins": ["alice@"], "group:ops": ["alice@"]}}`
		})
		groups = linker.NewPolicyGroups(headscale, linker.Timing{})
		if err := groups.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
		cfg.Access = AccessConfig{Groups: []string{"headplane-admins"}, HeadscaleGroups: []string{"admins"}}
		cfg.Headers = map[string]string{"X-WEBAUTH-USER": "headscale_user"}
		key, _ := x509.MarshalPKCS8PrivateKey(newTestKey(b))
		cfg.Assertion = AssertionConfig{Header: "X-Headgate-Assertion", Keys: []string{string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))}}
		groupNames = []string{"developers", "ops, infra"}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	} else {
		cfg.AccessLog = true
	}
	g, err := New(defaulted(cfg), cookies, store, links, groups, DefaultTiming(), log, nil)
	if err != nil {
		b.Fatal(err)
	}
	s := &session.Session{ID: session.NewID(), Issuer: "https://idp.example.com", Subject: "alice-sub",
		Email: "alice@example.com", EmailVerified: true, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), Groups: groupNames}
	if err := store.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := cookies.Seal(rec, s); err != nil {
		b.Fatal(err)
	}
	c := rec.Result().Cookies()[0]
	return g, c.Name + "=" + c.Value, upstream
}

// serveParallel sends GET /admin with cookie (when not empty) to h from parallel goroutines,
// b.N times in all, and fails unless each is answered 200.
func serveParallel(b *testing.B, h http.Handler, cookie string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "http://gate.example.com/admin", nil)
			if cookie != "" {
				r.Header.Set("Cookie", cookie)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkServeAuthenticated is one signed-in request through the whole handler (cookie,
// session check, link, rewrite, proxy to a loopback upstream). Compare with BenchmarkServeBareProxy.
func BenchmarkServeAuthenticated(b *testing.B) {
	g, cookie, _ := benchGateway(b)
	serveParallel(b, g, cookie)
}

// BenchmarkServeAuthorized is BenchmarkServeAuthenticated through access rules on IdP and
// Headscale groups, a further identity header, both groups headers and a signed assertion
// (reused, as it is for every request of a session but the first few minutes').
func BenchmarkServeAuthorized(b *testing.B) {
	g, cookie, _ := benchGatewayWith(b, true)
	serveParallel(b, g, cookie)
}

// BenchmarkServeAccessLog is BenchmarkServeAuthenticated with the access log on, writing each
// line as text or JSON to a discarding writer: what a line costs beyond the request.
func BenchmarkServeAccessLog(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			h := slog.Handler(slog.NewTextHandler(io.Discard, nil))
			if format == "json" {
				h = slog.NewJSONHandler(io.Discard, nil)
			}
			g, cookie, _ := benchGatewayLogged(b, false, slog.New(h))
			serveParallel(b, g, cookie)
		})
	}
}

// BenchmarkServeBareProxy is the floor: a plain ReverseProxy with the same transport settings
// and buffer pool.
func BenchmarkServeBareProxy(b *testing.B) {
	g, _, upstream := benchGateway(b)
	u, _ := url.Parse(upstream.URL)
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport:  g.proxy.Transport,
		BufferPool: g.proxy.BufferPool,
	}
	serveParallel(b, bare, "")
}

// BenchmarkServeTunedFloor is the floor for the proxy part of headgate's job: a ReverseProxy
// with the same transport and buffer pool that receives the same session cookie and drops it,
// and sets X-Forwarded-* and the identity headers headgate sets, with fixed values.
func BenchmarkServeTunedFloor(b *testing.B) {
	g, cookie, upstream := benchGateway(b)
	u, _ := url.Parse(upstream.URL)
	floor := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Set(headerUser, "alice")
			pr.Out.Header.Set(headerUserID, "1")
			pr.Out.Header.Set(headerForwardedUser, "alice")
			pr.Out.Header.Set(headerForwardedEmail, "alice@example.com")
			pr.Out.Header.Set(headerForwardedUsername, "alice")
		},
		Transport:  g.proxy.Transport,
		BufferPool: g.proxy.BufferPool,
	}
	serveParallel(b, floor, cookie)
}

// BenchmarkAuthenticate is the identity proof alone: open the cookie, check the session, resolve
// the link, all warm.
func BenchmarkAuthenticate(b *testing.B) {
	g, cookie, _ := benchGateway(b)
	r := httptest.NewRequest(http.MethodGet, "http://gate.example.com/admin", nil)
	r.Header.Set("Cookie", cookie)
	b.ReportAllocs()
	for b.Loop() {
		if _, res, err := g.authenticate(r, g.def, nil); res != authOK {
			b.Fatalf("authenticate: %v %v", res, err)
		}
	}
}

// BenchmarkAccessLogLine is GET /ping, the cheapest request, without the access log and with
// it as text and JSON (to a discarding writer): the access log's own cost per request.
func BenchmarkAccessLogLine(b *testing.B) {
	for _, format := range []string{"off", "text", "json"} {
		b.Run(format, func(b *testing.B) {
			var log *slog.Logger
			switch format {
			case "text":
				log = slog.New(slog.NewTextHandler(io.Discard, nil))
			case "json":
				log = slog.New(slog.NewJSONHandler(io.Discard, nil))
			}
			g, _, _ := benchGatewayLogged(b, false, log)
			r := httptest.NewRequest(http.MethodGet, "http://gate.example.com/ping", nil)
			w := discardWriter{http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				g.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkServeTailnet is BenchmarkServeAuthenticated on the tailnet listener: the request's
// identity is its device's, answered from the device cache (the control server's word is
// asked once per peer and identity_ttl), with no cookie at all.
func BenchmarkServeTailnet(b *testing.B) {
	g, _, _ := benchGateway(b)
	whois := func(context.Context, string) (Device, error) {
		return Device{NodeID: "7", Name: "alice-laptop", UserID: "1"}, nil
	}
	serveParallel(b, g.newTailnetHandler(whois, time.Minute, "https://headscale.example.com"), "")
}

// BenchmarkAuthenticateDevice is the tailnet listener's identity proof alone, warm: the
// device cache, then the link by user ID; BenchmarkAuthenticate is the cookie's.
func BenchmarkAuthenticateDevice(b *testing.B) {
	g, _, _ := benchGateway(b)
	whois := func(context.Context, string) (Device, error) {
		return Device{NodeID: "7", Name: "alice-laptop", UserID: "1"}, nil
	}
	h := g.newTailnetHandler(whois, time.Minute, "https://headscale.example.com")
	r := httptest.NewRequest(http.MethodGet, "http://headgate/admin", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, res, err := h.authenticateDevice(r, g.def, nil); res != authOK {
			b.Fatalf("authenticateDevice: %v %v", res, err)
		}
	}
}
