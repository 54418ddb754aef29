package testbed

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Upstream is the app behind headgate: it records every request it receives and answers with
// a page listing the request's headers, so a person trying the demo sees X-Headscale-User.
//
// Two kinds of path behave like the slow parts of real apps, whatever comes before them, so
// that each test can keep its own path prefix:
//   - .../slow?ms=N answers the page after N milliseconds (default 1000);
//   - .../events?n=N&every=D streams Server-Sent Events: one at once, then one every D
//     (default 100ms), N in all, or until the client leaves or the upstream closes when N is
//     0 or missing. Event i (from 1) is "id: i" and "data: event i".
type Upstream struct {
	// URL is the upstream's base URL, http://127.0.0.1:PORT.
	URL string

	srv       *http.Server
	closing   chan struct{} // closed by Close, to end slow answers and streams
	closeOnce sync.Once
	mu        sync.Mutex
	got       []Request
	routes    []route // guarded by mu
}

// route sends the paths under prefix to another app.
type route struct {
	prefix string
	proxy  *httputil.ReverseProxy
}

// Route sends every request whose path is prefix or lies under it to the app at target, such
// as Headplane under /admin, unchanged: same Host, same headers (headgate's identity headers
// among them), streamed without buffering. The demo serves Headplane and the echo this way
// behind one upstream address. Routed requests are not recorded.
func (u *Upstream) Route(prefix, target string) error {
	t, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("route %s: %w", prefix, err)
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(t)
			pr.Out.Host = pr.In.Host
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
		},
		FlushInterval: -1,
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.routes = append(u.routes, route{prefix: strings.TrimSuffix(prefix, "/"), proxy: p})
	return nil
}

// routed returns the proxy of the route r's path is under, or nil.
func (u *Upstream) routed(r *http.Request) *httputil.ReverseProxy {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, rt := range u.routes {
		if rest, ok := strings.CutPrefix(r.URL.Path, rt.prefix); ok && (rest == "" || rest[0] == '/' || rest[0] == '.') {
			return rt.proxy
		}
	}
	return nil
}

// Request is what reached the upstream.
type Request struct {
	Method string
	// Path is the request's path and query as sent to the upstream.
	Path   string
	Host   string
	Header http.Header
}

// StartUpstream starts another app like Upstream on a free port, for a headgate instance with
// several routes: each upstream records only what was routed to it. Close stops it; so does
// the stack's Close.
func (s *Stack) StartUpstream() (*Upstream, error) {
	u, err := startUpstream("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreams = append(s.upstreams, u)
	return u, nil
}

func startUpstream(addr string) (*Upstream, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start upstream: %w", err)
	}
	u := &Upstream{URL: "http://" + l.Addr().String(), closing: make(chan struct{})}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go u.srv.Serve(l)
	return u, nil
}

func (u *Upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if p := u.routed(r); p != nil {
		p.ServeHTTP(w, r)
		return
	}
	u.mu.Lock()
	u.got = append(u.got, Request{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header.Clone()})
	u.mu.Unlock()

	switch path.Base(r.URL.Path) {
	case "events":
		u.serveEvents(w, r)
		return
	case "slow":
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			ms = 1000
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		case <-u.closing:
			return
		}
	}

	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Upstream</title>\n")
	b.WriteString("<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem}td{padding:.2rem .8rem;vertical-align:top}" +
		"tr.id{background:#e8f0ff;font-weight:600}</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>The upstream received %s %s</h1>\n", html.EscapeString(r.Method), html.EscapeString(r.URL.RequestURI()))
	b.WriteString("<p>Headers set by headgate are highlighted. <a href=\"/oauth2/sign_out\">Sign out</a></p>\n<table>\n")
	for _, name := range names {
		class := ""
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-headscale-") || strings.HasPrefix(lower, "x-forwarded-") || strings.HasPrefix(lower, "x-auth-request-") {
			class = ` class="id"`
		}
		for _, v := range r.Header[name] {
			fmt.Fprintf(&b, "<tr%s><td>%s</td><td>%s</td></tr>\n", class, html.EscapeString(name), html.EscapeString(v))
		}
	}
	b.WriteString("</table></body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Upstream", "echo")
	w.Write([]byte(b.String()))
}

// serveEvents streams Server-Sent Events as the Upstream documentation describes.
func (u *Upstream) serveEvents(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	every, err := time.ParseDuration(r.URL.Query().Get("every"))
	if err != nil || every <= 0 {
		every = 100 * time.Millisecond
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Upstream", "events")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; n <= 0 || i <= n; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-u.closing:
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// Requests returns the requests received so far whose path starts with prefix. Tests give
// each of their requests a path of their own, so they can run in parallel.
func (u *Upstream) Requests(prefix string) []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []Request
	for _, r := range u.got {
		if strings.HasPrefix(r.Path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// Close stops the upstream. It is safe to call more than once.
func (u *Upstream) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u.closeOnce.Do(func() { close(u.closing) })
	u.srv.Shutdown(ctx)
}
