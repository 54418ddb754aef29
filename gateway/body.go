package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// Request bodies under a bound. Without one, a client could declare a body and send it a byte
// a minute, holding a connection, a goroutine and its buffers for as long as it liked; a few
// thousand such clients exhaust a gateway.

// boundBody makes r's body fail once the client pauses for longer than idle while sending it,
// and ends the connection then. The deadline runs only while headgate waits for the client:
// it is set afresh before each read and lifted once the body has ended. A handler that never
// reads the body (a refusal) leaves the first deadline in place, so Go's server, which reads up
// to 256 KiB of an unread body before it answers, gives up on a slow one after idle; refusals
// also close the connection (closeUnreadBody), so they are answered at once.
func boundBody(w http.ResponseWriter, r *http.Request, idle time.Duration) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(idle)) != nil {
		return // not a connection with deadlines (HTTP/2 streams have their own flow control)
	}
	r.Body = &boundedBody{ReadCloser: r.Body, rc: rc, idle: idle}
}

type boundedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	err  error // the error that ended the body, io.EOF included
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline stays: whatever answer follows, Go's server cannot wait for the rest
		// of the body either, and closes the connection.
		err = &stalledError{err}
		b.err = err
	case err != nil:
		// Ended: a stream that follows (an upgraded connection) must not inherit the deadline.
		b.err = err
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// stalledError is the error of a body read that waited past the bound. It is still the
// timeout it wraps (the proxy's transport treats it as one), and the proxy's error handler
// finds it to answer 408 rather than blame the upstream.
type stalledError struct{ error }

func (e *stalledError) Unwrap() error { return e.error }

// Timeout reports true, as the error it wraps does.
func (e *stalledError) Timeout() bool { return true }

// hasBody reports whether r comes with a body (of a declared length or chunked).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// closeUnreadBody makes an answer to r, which headgate gives without reading r's body, the last
// on its connection, and stops reading the body at once. Go's server would otherwise read up to
// 256 KiB of it, before the answer (on a connection it keeps) or after it, holding the
// connection for as long as a client takes to send them.
func closeUnreadBody(w http.ResponseWriter, r *http.Request) {
	if hasBody(r) {
		w.Header().Set("Connection", "close")
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}
