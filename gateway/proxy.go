package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// proxyKey carries a request's route and principal from serveProxy to the proxy's Rewrite.
type proxyKey struct{}

// proxied is what serveProxy found out about a request: its route and, unless the route
// exempts the request from authentication, the person's proven identity.
type proxied struct {
	route *route
	// in is the request as headgate received it, for the pages of upstreamError, which is
	// handed the outbound one.
	in            *http.Request
	authenticated bool      // false: a skip_auth request, sent without identity
	principal     principal // the proven identity, when authenticated
	// tailnet is the tailnet listener's handler for a request that came over the tailnet,
	// else nil.
	tailnet *tailnetHandler
}

// serveProxy proxies a request to its route's upstream: without identity for skip_auth paths,
// with the proven identity otherwise.
func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request) {
	g.proxyAdmitted(w, r, nil)
}

// proxyAdmitted proxies r if admit lets it through; tn is as for admit.
func (g *Gateway) proxyAdmitted(w http.ResponseWriter, r *http.Request, tn *tailnetHandler) {
	if px := g.admit(w, r, tn); px != nil {
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), proxyKey{}, px)))
	}
}

// admit finds a request's route and, unless the route exempts the request, proves its
// identity: from its session cookie, or, for a request on the tailnet listener (tn not nil),
// from the device that sent it. It returns what the proxy needs, or nil when it answered the
// request itself. It is kept apart from proxyAdmitted so that its kilobyte of locals is off
// the stack while the proxy runs: an event stream's goroutine stays blocked there for hours,
// and a stack that ends up above a quarter of its size is not shrunk (with 10,000 streams,
// 8 KiB more per stream).
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, tn *tailnetHandler) *proxied {
	dropH2CUpgrade(r.Header)
	rt, also := g.table.matchURL(r.Host, r.URL)
	if rt == nil {
		writePage(w, r, pageNoRoute)
		return nil
	}
	if len(also) == 0 && rt.skips(r) {
		noteAccess(w, rt, "", "")
		return &proxied{route: rt, in: r}
	}
	var (
		p   principal
		res authResult
		err error
	)
	if tn != nil {
		if !deviceEnough(rt, also) {
			tn.sendToSignIn(w, r)
			return nil
		}
		p, res, err = tn.authenticateDevice(r, rt, also)
	} else {
		p, res, err = g.authenticate(r, rt, also)
	}
	noteAccess(w, rt, p.subject(), p.link.UserName)
	if res != authOK {
		if tn != nil {
			tn.refuse(w, r, p, res, err, rt)
			return nil
		}
		if page, ok := g.dataRequest(r); ok {
			g.refuseDataRequest(w, r, page, res, err)
			return nil
		}
		g.refuse(w, r, p, res, err, rt, true)
		return nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && g.headplaneIndex(r) && !g.guardLink(w, r, p) {
		return nil
	}
	if g.asserter != nil {
		if p.assertion, err = g.assert(p, rt); err != nil {
			g.fail(w, r, pageAssertionDown.withAction("Try again", g.againHref(r)), err)
			return nil
		}
	}
	g.metrics.proxied.Inc()
	return &proxied{route: rt, in: r, authenticated: true, principal: p, tailnet: tn}
}

// dropH2CUpgrade removes a request's Upgrade header when it asks for h2c, HTTP/2 over plain
// TCP. Passed on, the upstream could switch the connection to HTTP/2, and every request the
// client then sent on it would reach the upstream without passing headgate (h2c smuggling).
// Without the header the request is served as the HTTP/1.1 request it also is.
func dropH2CUpgrade(h http.Header) {
	for _, v := range h["Upgrade"] {
		for token := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "h2c") {
				delete(h, "Upgrade")
				delete(h, "Http2-Settings")
				return
			}
		}
	}
}

// skips reports whether r is for one of the route's skip_auth paths. Only a plain request matches:
// a method of plain HTTP (not CONNECT, TRACE or an extension), and a path exactly as it came on
// the wire that holds nothing but letters, digits, "/", "-", ".", "_" and "~", and no "." or
// ".." segment. Any percent-encoding (of a dot, a slash, a backslash, a percent sign, an
// overlong UTF-8 sequence), a path parameter (";") or any other byte that some upstream might
// read its own way leaves the request to be authenticated like any other, so no spelling can
// stretch an exempt path over a protected one, however the upstream reads paths (Tomcat,
// Jetty and Spring strip ";..." and decode twice; nginx merges slashes; some servers take "\"
// for "/").
func (rt *route) skips(r *http.Request) bool {
	if len(rt.skipAuth) == 0 || !plainMethod(r.Method) {
		return false
	}
	path, _, _ := strings.Cut(r.RequestURI, "?")
	if path != r.URL.Path || !plainPath(path) {
		return false
	}
	for _, p := range rt.skipAuth {
		if strings.HasSuffix(p, "/") {
			if strings.HasPrefix(path, p) {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

// plainMethod reports whether m is one of the methods a skip_auth path may be requested with.
func plainMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// plainPath reports whether p is an absolute path of only unreserved characters and "/",
// without an empty, "." or ".." segment.
func plainPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// newProxy builds the reverse proxy. It uses Rewrite, not Director: hop-by-hop headers,
// including any named in the client's Connection header, are removed before Rewrite runs, so a
// client cannot have the identity headers deleted after they are set.
func (g *Gateway) newProxy() *httputil.ReverseProxy {
	transport := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Every proxied request goes to one host: keep enough idle connections for the load,
		// or most requests pay for a new connection (Go's default keeps two).
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: g.cfg.UpstreamTimeout,
		ExpectContinueTimeout: 1 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			px := pr.In.Context().Value(proxyKey{}).(*proxied)
			pr.SetURL(px.route.upstream)
			if px.route.preserveHost {
				pr.Out.Host = pr.In.Host
			}
			g.stripOwnedHeaders(pr.Out.Header)
			g.setForwarded(pr)
			g.cookies.StripOwn(pr.Out.Header)
			if px.authenticated {
				setIdentityHeaders(pr.Out.Header, px.principal, px.route, false)
			}
		},
		Transport:    transport,
		BufferPool:   &copyBuffers{},
		ErrorHandler: g.upstreamError,
		// What ErrorHandler does not see (a response body cut off while it is copied) goes to
		// headgate's log, not to the standard logger.
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		ModifyResponse: g.watchStreams,
	}
}

// copyBufferSize is the size of the buffers response bodies are copied through. Half of what
// httputil.ReverseProxy makes by itself: large bodies still move in few system calls, and the
// pool, which holds a buffer for every response in flight, stays small.
const copyBufferSize = 16 << 10

// copyBuffers lends the proxy the buffers it copies response bodies through. Without a pool,
// httputil.ReverseProxy makes a new 32 KiB buffer for every response: two thirds of the bytes
// a proxied request allocated, and so most of the garbage collector's work under load (each
// collection also scans the stack of every connection's goroutines). The pool holds array
// pointers, so lending and returning a buffer allocates nothing.
type copyBuffers struct{ pool sync.Pool }

func (b *copyBuffers) Get() []byte {
	if buf, ok := b.pool.Get().(*[copyBufferSize]byte); ok {
		return buf[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put takes back a buffer from Get; anything else is left to the garbage collector.
func (b *copyBuffers) Put(buf []byte) {
	if len(buf) != copyBufferSize {
		return
	}
	b.pool.Put((*[copyBufferSize]byte)(buf))
}

// setForwarded sets X-Forwarded-For, -Host and -Proto and X-Real-IP on the outbound request:
// what headgate saw itself, or, for a request from one of the trusted proxies, what that proxy
// saw (see Config.TrustedProxies). Rewrite starts from an outbound request without any of them
// but X-Real-IP, which stripOwnedHeaders removes after this.
func (g *Gateway) setForwarded(pr *httputil.ProxyRequest) {
	client, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
	if g.fromTrustedProxy(pr.In) {
		client = setForwardedFromProxy(pr, client)
	} else {
		pr.SetXForwarded()
	}
	if client != "" {
		pr.Out.Header[headerRealIP] = []string{client}
	}
}

// setForwardedFromProxy sets the forwarding headers of a request from a trusted proxy, keeping
// what the proxy saw, and returns the client's address: the last the proxy appended to the
// X-Forwarded-For chain, or proxy, the proxy's own, when it sent no chain.
func setForwardedFromProxy(pr *httputil.ProxyRequest, proxy string) string {
	client := proxy
	if chain := pr.In.Header["X-Forwarded-For"]; len(chain) > 0 {
		pr.Out.Header["X-Forwarded-For"] = chain // SetXForwarded appends the proxy's address
		// The proxy appended the address it saw last.
		last := chain[len(chain)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if addr, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
			client = addr.String()
		}
	}
	pr.SetXForwarded()
	if proto := pr.In.Header.Get("X-Forwarded-Proto"); proto == "http" || proto == "https" {
		pr.Out.Header.Set("X-Forwarded-Proto", proto)
	}
	if host := pr.In.Header.Get("X-Forwarded-Host"); host != "" {
		pr.Out.Header.Set("X-Forwarded-Host", host)
	}
	return client
}

// fromTrustedProxy reports whether r comes straight from one of the trusted proxies.
func (g *Gateway) fromTrustedProxy(r *http.Request) bool {
	if len(g.trusted) == 0 {
		return false
	}
	addrPort, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := addrPort.Addr().Unmap().WithZone("")
	for _, p := range g.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parsePrefix reads a trusted_proxies entry: an IP address or a CIDR prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("must be an IP address or CIDR prefix such as 10.0.0.0/8 (got %q)", s)
	}
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// upstreamError answers when the upstream cannot be reached or is too slow. r is the outbound
// request; the pages offer to repeat the inbound one.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		return
	}
	if stalled := (*stalledError)(nil); errors.As(err, &stalled) {
		g.fail(w, r, page{Status: http.StatusRequestTimeout, Title: "Request too slow",
			Message: "Your browser stopped sending the request, so headgate did not pass it on. Please try again."}, err)
		return
	}
	g.metrics.upstreamErrors.Inc()
	again := ""
	if px, ok := r.Context().Value(proxyKey{}).(*proxied); ok {
		again = g.againHref(px.in)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		g.fail(w, r, page{Status: http.StatusGatewayTimeout, Title: "The application is not answering",
			Message: "headgate forwarded your request, but the application behind it did not answer in time. " + tryAgainLater,
		}.withAction("Try again", again), err)
		return
	}
	g.fail(w, r, page{Status: http.StatusBadGateway, Title: "The application is unreachable",
		Message: "headgate could not reach the application behind it. " + tryAgainLater}.withAction("Try again", again), err)
}
