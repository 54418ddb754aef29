package gateway

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"time"

	"headgate/session"
)

// The access log (Config.AccessLog): one line per request, written once the answer is sent.
// Off, ServeHTTP does not touch a request beyond dispatching it; the handlers' calls to
// noteAccess then cost a failed type assertion.

// serveLogged serves r and logs it. It gives r an ID first: a trusted proxy's X-Request-Id
// when it looks like one, a new one otherwise, which the upstream receives in X-Request-Id
// (Rewrite copies the inbound header) and every line about r carries.
func (g *Gateway) serveLogged(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	start := time.Now()
	id := requestID(r)
	if id == "" || !g.fromTrustedProxy(r) {
		id = session.NewID()
	}
	r.Header[headerRequestID] = []string{id}
	rec := &accessRecorder{ResponseWriter: w}
	g.serve(rec, r, mux)

	status := rec.status
	if status == 0 {
		status = http.StatusOK // what Go's server sends for a handler that wrote nothing
	}
	attrs := [...]slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("request_id", id),
		slog.String("route", rec.route),
		slog.String("sub", rec.sub),
		slog.String("user", rec.user),
	}
	// Unknown values are left out: the route of a request for headgate's own pages, the
	// person of a request without a proven session.
	n := 6
	for _, a := range attrs[6:] {
		if a.Value.String() != "" {
			attrs[n] = a
			n++
		}
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs[:n]...)
}

// noteAccess tells the access log, when w is its recorder, the upstream route a request is
// for (rt, or nil) and the subject and Headscale user of its proven session ("" when unknown).
// It is cheap enough for every request: without the access log it does nothing.
func noteAccess(w http.ResponseWriter, rt *route, sub, user string) {
	rec, ok := w.(*accessRecorder)
	if !ok {
		return
	}
	if rt != nil {
		rec.route = rt.name
	}
	if sub != "" {
		rec.sub, rec.user = sub, user
	}
}

// accessRecorder is the ResponseWriter of a logged request: it notes the status and the size
// of the body as the handler writes them, and what noteAccess tells it. Flushes, read
// deadlines and the like reach the server's writer through Unwrap (http.ResponseController);
// a hijack is noted as the 101 it answers.
type accessRecorder struct {
	http.ResponseWriter
	status           int
	bytes            int64
	route, sub, user string
}

func (a *accessRecorder) WriteHeader(code int) {
	if a.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *accessRecorder) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	n, err := a.ResponseWriter.Write(b)
	a.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered to the client, as the server's writer does.
func (a *accessRecorder) Flush() {
	http.NewResponseController(a.ResponseWriter).Flush()
}

// Hijack takes over the connection, as for an upgrade to a WebSocket, whose answer the proxy
// then writes itself: the request is logged with 101.
func (a *accessRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(a.ResponseWriter).Hijack()
	if err == nil && a.status == 0 {
		a.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// Unwrap returns the server's writer, for http.ResponseController.
func (a *accessRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }
