package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"headgate/session"
)

// Streams (Server-Sent Events and upgraded connections such as WebSockets) outlive the request
// that proved their session. headgate watches each one: it ends when its session ends (a
// sign-out on any instance, a back-channel logout, expiry) and when the gateway drains for a
// shutdown. Ordinary responses are not watched. A stream's session is checked every
// Timing.StreamCheck.

// Drain ends every stream being proxied, and every one that starts later, so that a graceful
// shutdown does not wait for streams that never finish by themselves: an event stream gets a
// clean end of its body, an upgraded connection is closed. Browsers reconnect such streams, to
// another instance. Ordinary requests are not affected. Drain may be called more than once.
func (g *Gateway) Drain() {
	g.drainOnce.Do(func() { close(g.draining) })
}

// watchStreams is the proxy's ModifyResponse: it has an event stream or an upgraded
// connection end when the gateway drains or the session that opened it ends.
func (g *Gateway) watchStreams(resp *http.Response) error {
	upgraded := resp.StatusCode == http.StatusSwitchingProtocols
	if !upgraded && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil
	}
	// ReverseProxy copies an upgraded connection through the body, which must stay an
	// io.ReadWriteCloser.
	conn, isConn := resp.Body.(io.ReadWriteCloser)
	if upgraded && !isConn {
		return nil
	}
	w := &streamWatch{body: resp.Body, draining: g.draining, done: make(chan struct{}), stopTick: func() {}}
	// The outbound request carries the inbound request's context, and with it the principal of
	// an authenticated request; skip_auth streams have none and end only on drain.
	if px, ok := resp.Request.Context().Value(proxyKey{}).(*proxied); ok && px.authenticated {
		w.session, w.store, w.every = px.principal.session, g.store, g.timing.StreamCheck
		// The checks start with the stream, before its first byte reaches the client.
		w.tick, w.stopTick = g.timing.Tick(w.every)
	}
	if upgraded {
		resp.Body = &watchedConn{ReadWriteCloser: conn, w: w}
	} else {
		resp.Body = &watchedBody{ReadCloser: resp.Body, w: w}
	}
	go w.run()
	return nil
}

// streamWatch ends one stream by closing its upstream body once the gateway drains or the
// stream's session ends.
type streamWatch struct {
	body     io.Closer
	draining <-chan struct{}
	// session and store are the stream's session and where it is checked, at each tick of
	// tick, which comes every every; nil (and tick nil) for a stream without one.
	session  *session.Session
	store    Store
	every    time.Duration
	tick     <-chan time.Time
	stopTick func()

	// ended is set before the watch closes the body, so a read that fails because of it knows.
	ended     atomic.Bool
	done      chan struct{} // closed when the proxy closes the body
	closeOnce sync.Once
}

func (w *streamWatch) run() {
	defer w.stopTick()
	for {
		select {
		case <-w.done:
			return
		case <-w.draining:
			w.end()
			return
		case <-w.tick:
			if w.sessionEnded() {
				w.end()
				return
			}
		}
	}
}

// sessionEnded reports whether the stream's session was signed out or expired. A store that
// cannot answer does not end it: the session was proven, and availability fails soft.
func (w *streamWatch) sessionEnded() bool {
	ctx, cancel := context.WithTimeout(context.Background(), w.every)
	defer cancel()
	err := w.store.Check(ctx, w.session)
	return err != nil && !errors.Is(err, session.ErrUnavailable)
}

// end closes the upstream body, which unblocks a pending read.
func (w *streamWatch) end() {
	w.ended.Store(true)
	w.body.Close()
}

func (w *streamWatch) closed() { w.closeOnce.Do(func() { close(w.done) }) }

// watchedBody is an event stream's body: it reports a clean EOF once the watch ended it.
type watchedBody struct {
	io.ReadCloser
	w *streamWatch
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.w.ended.Load() {
		return n, io.EOF
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.closed()
	return b.ReadCloser.Close()
}

// watchedConn is an upgraded connection to the upstream; closing it ends both directions.
type watchedConn struct {
	io.ReadWriteCloser
	w *streamWatch
}

func (c *watchedConn) Close() error {
	c.w.closed()
	return c.ReadWriteCloser.Close()
}
