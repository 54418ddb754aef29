package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// streamingUpstream serves an endless event stream at every path ending in /events and, at
// /socket, an upgraded connection that echoes what it reads, until the other side goes away.
func streamingUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/events"):
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		case r.URL.Path == "/socket":
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			io.Copy(conn, rw)
		default:
			w.Write([]byte("ok"))
		}
	})
}

// openEvents opens the event stream through the gateway and reads its first event.
func openEvents(t *testing.T, e *testEnv, h http.Header) *bufio.Reader {
	t.Helper()
	_, r := openEventsAt(t, e, "/events", h)
	return r
}

// openEventsAt opens the event stream at path through the gateway and reads its first event;
// it returns the stream's body, for the test to close, and a reader of the events after it.
func openEventsAt(t *testing.T, e *testEnv, path string, h http.Header) (io.Closer, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: got %d, want 200", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: got %q, %v", line, err)
	}
	return resp.Body, r
}

// openSocket upgrades a connection through the gateway and checks that it echoes.
func openSocket(t *testing.T, e *testEnv, h http.Header) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\nCookie: %s\r\n\r\n",
		e.srv.Listener.Addr(), h.Get("Cookie"))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "hello\n")
	if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo: got %q, %v", line, err)
	}
	return conn, r
}

// nextEvent reads r up to its next event's data line, and fails the test if the stream ends
// first.
func nextEvent(t *testing.T, what string, r *bufio.Reader) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v, want more events", what, err)
		}
		if strings.HasPrefix(line, "data: ") {
			return
		}
	}
}

// untilEnd reads r until it ends, and fails when that takes longer than limit.
func untilEnd(t *testing.T, what string, r io.Reader, limit time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-time.After(limit):
		t.Fatalf("%s still open after %v", what, limit)
		return 0, nil
	}
}

// TestStreamsEndWithTheirSession: an event stream and an upgraded connection opened with a
// session end at the first check after the session does, whatever ended it; a stream of
// another session goes on. The gateway's clock moves only when the test moves it, so nothing
// but that check can end them.
func TestStreamsEndWithTheirSession(t *testing.T) {
	endings := map[string]func(e *testEnv, h http.Header){
		"sign-out": func(e *testEnv, h http.Header) {
			if resp := e.get(t, "/oauth2/sign_out", h); resp.StatusCode != http.StatusOK {
				t.Fatalf("sign-out: got %d", resp.StatusCode)
			}
		},
		"back-channel logout": func(e *testEnv, h http.Header) {
			if got := e.postLogout(t, e.idp.LogoutToken(t, map[string]any{"sid": "sid-ending"})); got != http.StatusOK {
				t.Fatalf("back-channel logout: got %d", got)
			}
		},
	}
	for name, end := range endings {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.upstream = streamingUpstream() })
			withAlice(e)
			ending, other := e.signedInWithSID(t, "sid-ending"), e.signedInWithSID(t, "sid-other")
			events, keptEvents := openEvents(t, e, ending), openEvents(t, e, other)
			_, socketReader := openSocket(t, e, ending)
			keptSocket, keptReader := openSocket(t, e, other)

			end(e, ending)
			e.clock.Advance(e.gw.timing.StreamCheck)
			took, err := untilEnd(t, "the event stream", events, 10*time.Second)
			if err != nil {
				t.Errorf("event stream ended with %v, want a clean end", err)
			}
			t.Logf("event stream ended %v after the check", took)
			took, _ = untilEnd(t, "the upgraded connection", socketReader, 10*time.Second)
			t.Logf("upgraded connection closed %v after the check", took)

			// The other session's streams go on, past the next checks: a watch takes a tick
			// only once it is done with the one before.
			for range 2 {
				e.clock.Advance(e.gw.timing.StreamCheck)
			}
			nextEvent(t, "another session's event stream", keptEvents)
			fmt.Fprint(keptSocket, "still\n")
			if line, err := keptReader.ReadString('\n'); err != nil || line != "still\n" {
				t.Errorf("another session's upgraded connection: got %q, %v, want the echo", line, err)
			}
		})
	}
}

// TestDrainEndsStreams: a shutdown's drain ends event streams cleanly and closes upgraded
// connections at once. The gateway's clock stands still, so no check of the session can be
// what ends them.
func TestDrainEndsStreams(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.upstream = streamingUpstream(); o.memory = true })
	withAlice(e)
	h := e.signedInWithSID(t, "sid-1")
	events := openEvents(t, e, h)
	_, socket := openSocket(t, e, h)
	e.gw.Drain()
	if _, err := untilEnd(t, "the event stream", events, 10*time.Second); err != nil {
		t.Errorf("event stream ended with %v, want a clean end", err)
	}
	untilEnd(t, "the upgraded connection", socket, 10*time.Second)
}
