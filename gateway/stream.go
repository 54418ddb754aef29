package gateway

import (
	"io"
	"net/http"
	"strings"
)

// Streams (Server-Sent Events and upgraded connections such as WebSockets) outlive the request
// that proved their session. headgate registers each one (see streamRegistry): it ends when its
// session ends (a sign-out on any instance, a back-channel logout, expiry) and when the gateway
// drains for a shutdown. Ordinary responses are not registered. A stream's session is checked
// every Timing.StreamCheck.

// Drain ends every stream being proxied, and every one that starts later, so that a graceful
// shutdown does not wait for streams that never finish by themselves: an event stream gets a
// clean end of its body, an upgraded connection is closed. Browsers reconnect such streams, to
// another instance. Ordinary requests are not affected. Drain may be called more than once.
func (g *Gateway) Drain() {
	g.streams.drain()
}

// watchStreams is the proxy's ModifyResponse: it registers an event stream or an upgraded
// connection, to end when the gateway drains or the session that opened it ends.
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
	s := &stream{body: resp.Body}
	// The outbound request carries the inbound request's context, and with it the principal of
	// an authenticated request; skip_auth streams have none and end only on drain.
	if px, ok := resp.Request.Context().Value(proxyKey{}).(*proxied); ok && px.authenticated {
		s.session = px.principal.session
		if px.tailnet != nil {
			// A device's session is not the store's: it stands while the device does.
			s.recheck = px.tailnet.recheck(px.in.RemoteAddr, *px.principal.device)
		}
	}
	if upgraded {
		resp.Body = &watchedConn{ReadWriteCloser: conn, s: s, streams: g.streams}
	} else {
		resp.Body = &watchedBody{ReadCloser: resp.Body, s: s, streams: g.streams}
	}
	g.streams.add(s)
	return nil
}

// watchedBody is an event stream's body: it reports a clean EOF once the registry ended it,
// and leaves the registry when the proxy closes it.
type watchedBody struct {
	io.ReadCloser
	s       *stream
	streams *streamRegistry
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.s.ended.Load() {
		return n, io.EOF
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.streams.remove(b.s)
	return b.ReadCloser.Close()
}

// watchedConn is an upgraded connection to the upstream; closing it ends both directions and
// takes it out of the registry.
type watchedConn struct {
	io.ReadWriteCloser
	s       *stream
	streams *streamRegistry
}

func (c *watchedConn) Close() error {
	c.streams.remove(c.s)
	return c.ReadWriteCloser.Close()
}
