package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// accessLines returns the access log's lines in e's JSON log, oldest first.
func accessLines(t *testing.T, e *testEnv) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, raw := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if raw == "" {
			continue
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Fatalf("a log line that is not JSON: %q", raw)
		}
		if line["msg"] == "request" {
			lines = append(lines, line)
		}
	}
	return lines
}

// accessLine returns the last access log line for path, failing without one.
func accessLine(t *testing.T, e *testEnv, path string) map[string]any {
	t.Helper()
	lines := accessLines(t, e)
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i]["path"] == path {
			return lines[i]
		}
	}
	t.Fatalf("no access log line for %s in:\n%s", path, e.logs.String())
	return nil
}

func withAccessLog(o *envOptions) {
	o.jsonLog = true
	prev := o.edit
	o.edit = func(c *Config) {
		c.AccessLog = true
		if prev != nil {
			prev(c)
		}
	}
}

// TestAccessLog: with access_log, every request gets one line with its method, path (never
// its query), status, size, duration, ID, route and person; the upstream receives the ID, and
// a client cannot choose it.
func TestAccessLog(t *testing.T) {
	e := newTestEnv(t, withAccessLog)
	withAlice(e)
	_, c := e.signedIn(t)
	resp := e.get(t, "/app/x?token=s3cr3t-query", http.Header{"Cookie": {c.Name + "=" + c.Value}, "X-Request-Id": {"chosen-by-client"}})
	body := readBody(t, resp)
	line := accessLine(t, e, "/app/x")
	want := map[string]any{"level": "INFO", "method": "GET", "status": float64(200), "bytes": float64(len(body)),
		"route": "default", "sub": "alice-sub", "user": "alice"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s: got %v, want %v (line %v)", k, line[k], v, line)
		}
	}
	if d, ok := line["duration"].(float64); !ok || d <= 0 {
		t.Errorf("duration: got %v, want a positive number of nanoseconds", line["duration"])
	}
	id, _ := line["request_id"].(string)
	if got := e.upstream.last().Header.Get("X-Request-Id"); id == "" || id == "chosen-by-client" || got != id {
		t.Errorf("request ID: the log says %q, the upstream got %q; want one of headgate's, the same", id, got)
	}

	// The sign-in's lines: the callback's carries the person, none a query, code or cookie.
	callback := accessLine(t, e, "/oauth2/callback")
	if callback["status"] != float64(http.StatusFound) || callback["sub"] != "alice-sub" || callback["user"] != "alice" {
		t.Errorf("callback line: got %v", callback)
	}
	if start := accessLine(t, e, "/oauth2/start"); start["sub"] != nil || start["route"] != nil {
		t.Errorf("a request without a session has no person or route: got %v", start)
	}
	for _, secret := range []string{"s3cr3t-query", "code=", "state=", c.Value} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the log holds %.20q", secret)
		}
	}
	// A refused request is logged too, without a person.
	e.get(t, "/app/y", nil)
	if refused := accessLine(t, e, "/app/y"); refused["status"] != float64(http.StatusUnauthorized) || refused["sub"] != nil {
		t.Errorf("refused request: got %v", refused)
	}
}

// TestAccessLogRequestIDs: a trusted proxy's request ID is kept when it looks like one; any
// other is replaced, and a failure page shows the ID of the request's lines.
func TestAccessLogRequestIDs(t *testing.T) {
	trusted := newTestEnv(t, withAccessLog, func(o *envOptions) { o.trusted = []string{"127.0.0.1"} })
	trusted.get(t, "/admin/healthz", http.Header{"X-Request-Id": {"lb-7f3a"}})
	if got := trusted.upstream.last().Header.Get("X-Request-Id"); got != "lb-7f3a" {
		t.Errorf("a trusted proxy's ID: the upstream got %q, want lb-7f3a", got)
	}
	if got := accessLine(t, trusted, "/admin/healthz")["request_id"]; got != "lb-7f3a" {
		t.Errorf("a trusted proxy's ID: the log says %v, want lb-7f3a", got)
	}
	trusted.get(t, "/admin/healthz", http.Header{"X-Request-Id": {"has a space"}})
	if got := trusted.upstream.last().Header.Get("X-Request-Id"); got == "has a space" || got == "" {
		t.Errorf("a malformed ID: the upstream got %q, want one of headgate's", got)
	}

	e := newTestEnv(t, withAccessLog)
	resp := e.get(t, "/oauth2/nope", http.Header{"Accept": {"text/html"}})
	got := readShown(t, resp)
	if id := accessLine(t, e, "/oauth2/nope")["request_id"]; got.status != http.StatusNotFound || id == "" {
		t.Fatalf("got %d, logged with ID %v", got.status, id)
	}
	e.upstream.srv.Close()
	resp = e.get(t, "/admin/healthz", http.Header{"Accept": {"text/html"}})
	page := readShown(t, resp)
	if id := accessLine(t, e, "/admin/healthz")["request_id"]; page.status != http.StatusBadGateway || page.requestID != id {
		t.Errorf("failure page: got %d with ID %q, want 502 with the line's %v", page.status, page.requestID, id)
	}
}

// TestAccessLogOff: without access_log there are no request lines, the request ID a client
// sends goes on as before, and ServeHTTP allocates nothing beyond what the routes do.
func TestAccessLogOff(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.jsonLog = true })
	e.get(t, "/admin/healthz", http.Header{"X-Request-Id": {"client-1"}})
	if got := e.upstream.last().Header.Get("X-Request-Id"); got != "client-1" {
		t.Errorf("the upstream got X-Request-Id %q, want the client's as before", got)
	}
	if lines := accessLines(t, e); len(lines) != 0 {
		t.Errorf("got %d access log lines, want none", len(lines))
	}
	r := httptest.NewRequest(http.MethodGet, "/ping", nil)
	w := discardWriter{http.Header{}}
	viaGateway := testing.AllocsPerRun(200, func() { e.gw.ServeHTTP(w, r) })
	viaMux := testing.AllocsPerRun(200, func() { e.gw.mux.ServeHTTP(w, r) })
	if viaGateway != viaMux {
		t.Errorf("GET /ping allocates %v times through ServeHTTP, %v through the route table alone; want the same", viaGateway, viaMux)
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

// TestAccessLogStreams: the access log's writer passes flushes and connection upgrades through:
// an event stream's first event arrives while the upstream still writes, and an upgraded
// connection carries bytes both ways and is logged as 101.
func TestAccessLogStreams(t *testing.T) {
	release := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			<-release
		case "/upgrade":
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("upstream hijack: %v", err)
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			rw.Flush()
			line, _ := rw.ReadString('\n')
			fmt.Fprint(rw, "echo "+line)
			rw.Flush()
		}
	})
	e := newTestEnv(t, withAccessLog, func(o *envOptions) { o.upstream = upstream; o.memory = true })
	withAlice(e)
	_, c := e.signedIn(t)

	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/events", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(release)
	resp.Body.Close()
	if err != nil || first != "data: first\n" {
		t.Errorf("first event: got %q, %v", first, err)
	}

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
		e.srv.Listener.Addr(), c.Name, c.Value)
	br := bufio.NewReader(conn)
	up, err := http.ReadResponse(br, nil)
	if err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %v, %v", up, err)
	}
	fmt.Fprint(conn, "ping\n")
	if echo, err := br.ReadString('\n'); err != nil || echo != "echo ping\n" {
		t.Errorf("through the upgraded connection: got %q, %v", echo, err)
	}
	conn.Close()
	waitFor(t, "the upgraded connection's log line", func() bool {
		for _, l := range accessLines(t, e) {
			if l["path"] == "/upgrade" {
				return l["status"] == float64(http.StatusSwitchingProtocols)
			}
		}
		return false
	})
}

// waitFor polls done until it reports true, for what a handler does after its client has its
// answer; it fails the test after five seconds.
func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
