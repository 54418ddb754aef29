package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"headgate/internal/testbed"
)

// The streams the benchmark opens: an event stream (Server-Sent Events) or a WebSocket, each
// carrying one small message a second from the upstream to the client. The WebSocket side is
// the few lines of RFC 6455 that this needs: the handshake and unmasked text frames shorter
// than 126 bytes from the server; the client sends nothing after its handshake.

// streamKind is an event stream or a WebSocket.
type streamKind string

const (
	kindEvents streamKind = "event stream"
	kindSocket streamKind = "WebSocket"
)

// path is where the upstream serves streams of this kind.
func (k streamKind) path() string {
	if k == kindSocket {
		return "/stream/socket"
	}
	return "/stream/events"
}

// websocketGUID is RFC 6455's constant for the Sec-WebSocket-Accept answer.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// streamUpstream serves the streams: at once a first message, then one every interval, until
// a write fails because the other side went away.
func streamUpstream(interval time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case kindEvents.path():
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-store")
			rc := http.NewResponseController(w)
			tick(r.Context(), interval, func(n int) error {
				if _, err := fmt.Fprintf(w, "data: event %d\n\n", n); err != nil {
					return err
				}
				return rc.Flush()
			})
		case kindSocket.path():
			key := r.Header.Get("Sec-WebSocket-Key")
			if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
				http.Error(w, "not a websocket handshake", http.StatusBadRequest)
				return
			}
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", websocketAccept(key))
			tick(context.Background(), interval, func(n int) error {
				msg := "tick " + strconv.Itoa(n)
				rw.Write([]byte{0x81, byte(len(msg))}) // FIN, text; unmasked, len < 126
				rw.WriteString(msg)
				return rw.Flush()
			})
		default:
			http.NotFound(w, r)
		}
	})
}

// tick calls send with 0, 1, 2, ... at once and then every interval, until it fails or ctx
// ends.
func tick(ctx context.Context, interval time.Duration, send func(n int) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		if send(n) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// streamClient is one stream as a client holds it: a connection it reads messages from.
type streamClient struct {
	conn net.Conn
	// messages counts the messages received; ended is closed when the stream ends, which
	// endedAt then tells.
	messages atomic.Int64
	ended    chan struct{}
	endedAt  time.Time
}

// openStream opens a stream of kind at addr (host:port) with cookie, and returns once its first
// message has arrived; the stream is then read in a goroutine of its own until it ends.
func openStream(ctx context.Context, addr string, kind streamKind, cookie string) (*streamClient, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Closed with a reset, so that thousands of closes leave no TIME_WAIT behind to take the
	// next round's ports.
	conn.(*net.TCPConn).SetLinger(0)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &streamClient{conn: conn, ended: make(chan struct{})}
	br := bufio.NewReaderSize(conn, 512)
	var read func() error
	switch kind {
	case kindEvents:
		read, err = c.openEvents(addr, cookie, br)
	case kindSocket:
		read, err = c.openSocket(addr, cookie, br)
	}
	if err == nil {
		err = read() // the first message
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open %s: %w", kind, err)
	}
	conn.SetDeadline(time.Time{})
	go func() {
		for read() == nil {
		}
		c.endedAt = time.Now()
		close(c.ended)
	}()
	return c, nil
}

// openEvents sends an event stream's request and returns the reader of its events.
func (c *streamClient) openEvents(addr, cookie string, br *bufio.Reader) (func() error, error) {
	fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCookie: %s\r\n\r\n", kindEvents.path(), addr, cookie)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil, fmt.Errorf("got %d %s, not an event stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := bufio.NewReaderSize(resp.Body, 64)
	return func() error {
		for {
			line, err := events.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return err
			}
			if len(line) == 1 { // the blank line that ends an event
				c.messages.Add(1)
				return nil
			}
		}
	}, nil
}

// openSocket performs a WebSocket handshake and returns the reader of its frames.
func (c *streamClient) openSocket(addr, cookie string, br *bufio.Reader) (func() error, error) {
	key := base64.StdEncoding.EncodeToString([]byte(rand.Text())[:16])
	fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nCookie: %s\r\n\r\n",
		kindSocket.path(), addr, key, cookie)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(key) {
		return nil, fmt.Errorf("got %d, not a WebSocket handshake", resp.StatusCode)
	}
	var frame [125]byte
	return func() error {
		var head [2]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return err
		}
		n := int(head[1])
		if head[0] != 0x81 || n > len(frame) {
			return fmt.Errorf("unexpected frame % x", head)
		}
		if _, err := io.ReadFull(br, frame[:n]); err != nil {
			return err
		}
		c.messages.Add(1)
		return nil
	}, nil
}

// close closes the client's side, and waits for its reader to stop.
func (c *streamClient) close() {
	c.conn.Close()
	<-c.ended
}

// serveStreams serves the streams' upstream on addr until ctx ends: the streams under
// /stream/, at identityPath the identity headers it received, and upstreamBody at every other
// path.
func serveStreams(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/stream/", streamUpstream(time.Second))
	mux.HandleFunc(identityPath, writeIdentity)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeUpstreamPage(w) })
	return serveUntilDone(ctx, addr, mux, "serve the streams' upstream")
}

// identityThrough returns the identity headers the upstream receives through the proxy at
// proxyURL with cookie.
func identityThrough(ctx context.Context, proxyURL, cookie string) ([][2]string, error) {
	page, err := testbed.Fetch(ctx, nil, http.MethodGet, proxyURL+identityPath, http.Header{"Cookie": {cookie}})
	if err != nil {
		return nil, fmt.Errorf("identity headers: %w", err)
	}
	var seen [][2]string
	if page.Status != http.StatusOK || json.Unmarshal([]byte(page.Body), &seen) != nil || len(seen) == 0 {
		return nil, fmt.Errorf("identity headers through %s: got %d %q", proxyURL, page.Status, page.Body)
	}
	return seen, nil
}
