package e2e

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Upstream is the app behind headgate: it records every request it receives and answers with
// a page listing the request's headers, so a person trying the demo sees X-Headscale-User.
type Upstream struct {
	// URL is the upstream's base URL, http://127.0.0.1:PORT.
	URL string

	srv *http.Server
	mu  sync.Mutex
	got []Request
}

// Request is what reached the upstream.
type Request struct {
	Method string
	// Path is the request's path and query as sent to the upstream.
	Path   string
	Host   string
	Header http.Header
}

func startUpstream(addr string) (*Upstream, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start upstream: %w", err)
	}
	u := &Upstream{URL: "http://" + l.Addr().String()}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go u.srv.Serve(l)
	return u, nil
}

func (u *Upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.got = append(u.got, Request{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header.Clone()})
	u.mu.Unlock()

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

// Close stops the upstream.
func (u *Upstream) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u.srv.Shutdown(ctx)
}
