package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// openRequest writes head (a request line and headers, ending in a blank line) and a first part
// of its body, and leaves the rest unsent. It returns the connection and its reader.
func openRequest(t *testing.T, e *testEnv, head, part string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A bound on the whole exchange: the answers below come at once or after a short
	// body_timeout, never near this.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(head + part)); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// TestRefusalDoesNotWaitForTheBody: a request headgate refuses is answered at once, however
// slowly its body comes, and its connection is closed.
func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.headplane = "/admin" })
	for _, head := range []string{
		"POST /app HTTP/1.1\r\nHost: gate\r\nContent-Length: 100000\r\n\r\n",
		"POST /app HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\n\r\n",
		"PUT /app HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /admin/users.data HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\n\r\n",
		"POST /app HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\nCookie: _headgate=forged\r\nAccept: text/html\r\n\r\n",
		"POST /oauth2/nothing HTTP/1.1\r\nHost: gate\r\nContent-Length: 100\r\n\r\n",
	} {
		conn, br := openRequest(t, e, head, "abc")
		method, _, _ := strings.Cut(head, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", head, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 && resp.StatusCode != http.StatusNoContent || !resp.Close {
			t.Errorf("%q: got %d (close %v), want a refusal that closes the connection", head, resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%q: the connection stays open after the refusal (%v)", head, err)
		}
		conn.Close()
	}
	if n := e.upstream.count(); n != 0 {
		t.Errorf("the upstream received %d requests, want none", n)
	}
}

// TestStalledBodyAbandoned: a signed-in client that stops sending its body is answered 408 once
// body_timeout passes without a byte, and its connection is closed; a body that keeps coming
// is passed on whole, however long it takes in all.
func TestStalledBodyAbandoned(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) {
		o.memory = true
		o.bodyTimeout = 300 * time.Millisecond
		o.upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			w.Write([]byte("got " + string(b)))
		})
	})
	withAlice(e)
	_, c := e.signedIn(t)
	cookie := "Cookie: " + c.Name + "=" + c.Value + "\r\n"

	// Taken before the request is sent, so that no deadline the gateway sets can predate it.
	start := time.Now()
	conn, br := openRequest(t, e, "POST /app HTTP/1.1\r\nHost: gate\r\n"+cookie+"Content-Length: 10\r\n\r\n", "abc")
	// Whatever the answer (408 when the upstream had not answered yet, else the upstream's own
	// to a body cut short), the connection ends after it.
	if resp, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Logf("stalled body: answered %d", resp.StatusCode)
		}
	}
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stalled body: the connection is still open (%v)", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("stalled body: ended after %v, before body_timeout", waited)
	}
	conn.Close()

	// A body sent in pieces, each within body_timeout of the last but all together well past
	// it, is fine. The pauses are the client's pace, not a wait for an outcome; a sixth of
	// body_timeout each, so that a busy machine stretching one does not cut the body.
	conn, br = openRequest(t, e, "POST /app HTTP/1.1\r\nHost: gate\r\n"+cookie+"Content-Length: 10\r\n\r\n", "ab")
	for _, piece := range "cdefghij" {
		time.Sleep(50 * time.Millisecond)
		conn.Write([]byte(string(piece)))
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "got abcdefghij" {
		t.Errorf("steady body: got %d %q, want 200 %q", resp.StatusCode, body, "got abcdefghij")
	}
}
