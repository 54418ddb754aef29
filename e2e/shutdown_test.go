package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// stream is what a client read from a Server-Sent Events response.
type stream struct {
	status int
	// events holds the data of each event, and at when it arrived, from the request's start.
	events []string
	at     []time.Duration
	// end is how the stream ended: nil for a clean end of the body, else the read error.
	end   error
	ended time.Time
}

// readEvents sends GET path to g with header and reads the response as Server-Sent Events
// until it ends. first, when not nil, is closed when the first event has arrived.
func readEvents(ctx context.Context, g *testbed.Gateway, path string, header http.Header, first chan<- struct{}) stream {
	var st stream
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+path, nil)
	if err != nil {
		st.end = err
		return st
	}
	req.Header = header.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		st.end = err
		return st
	}
	defer resp.Body.Close()
	st.status = resp.StatusCode
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if data, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "data: "); ok {
			st.events = append(st.events, data)
			st.at = append(st.at, time.Since(start))
			if len(st.events) == 1 && first != nil {
				close(first)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				st.end = err
			}
			st.ended = time.Now()
			return st
		}
	}
}

// answer is the outcome of one request sent in the background.
type answer struct {
	page *testbed.Page
	err  error
	done time.Time
}

func fetchAsync(ctx context.Context, g *testbed.Gateway, path string, header http.Header) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		page, err := g.Fetch(ctx, nil, http.MethodGet, path, header)
		ch <- answer{page, err, time.Now()}
	}()
	return ch
}

// TestGracefulShutdown sends SIGTERM to an instance of the shared stack with requests in
// flight: it stops accepting connections, requests waiting for the upstream finish with its
// answer, a Server-Sent Events
// stream ends cleanly (end of body, not a reset) within shutdown_timeout, headgate exits with
// status 0, and Redis keeps what the instance wrote: a session started before the shutdown
// serves at the restarted instance, and one signed out just before stays signed out.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	sharedStack(t)
	const timeout = 4 * time.Second
	g := startGateway(t, stack, testbed.GatewayOptions{Extra: map[string]any{"shutdown_timeout": timeout.String()}})
	t.Cleanup(g.Stop)
	ctx := withTimeout(t, 20*time.Second)
	prefix := testPrefix(t)
	cookie := loginCookie(t, g, testbed.Bob, prefix+"login")
	ended := loginCookie(t, g, testbed.Bob, prefix+"login-ended")
	signOut(t, g, ended)

	// A short and a long wait for the upstream (both within shutdown_timeout), and a stream.
	short := fetchAsync(ctx, g, prefix+"short/slow?ms=1000", api(cookie))
	long := fetchAsync(ctx, g, prefix+"long/slow?ms=3000", api(cookie))
	first := make(chan struct{})
	events := make(chan stream, 1)
	go func() { events <- readEvents(ctx, g, prefix+"events", api(cookie), first) }()
	select {
	case <-first:
	case <-ctx.Done():
		t.Fatal("the event stream did not start")
	}
	eventually(t, "the slow requests reach the upstream", 5*time.Second, 10*time.Millisecond, func() (bool, string) {
		n := len(stack.Upstream.Requests(prefix+"short/")) + len(stack.Upstream.Requests(prefix+"long/"))
		return n == 2, "not yet"
	})

	signalled := time.Now()
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "headgate stops accepting connections", time.Second, 10*time.Millisecond, func() (bool, string) {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(g.URL, "http://"), 100*time.Millisecond)
		if err != nil {
			return true, ""
		}
		c.Close()
		return false, "a new connection was accepted"
	})
	for name, ch := range map[string]<-chan answer{"1s": short, "3s": long} {
		a := <-ch
		switch {
		case a.err != nil:
			t.Errorf("the %s request in flight at SIGTERM: %v, want the upstream's 200", name, a.err)
		case a.page.Status != http.StatusOK || !strings.Contains(a.page.Body, "The upstream received"):
			t.Errorf("the %s request in flight at SIGTERM: got %d %q, want the upstream's 200", name, a.page.Status, a.page.Body)
		}
	}
	st := <-events
	if st.end != nil {
		t.Errorf("the event stream ended with %v after %d events, want a clean end of the body", st.end, len(st.events))
	}
	if took := st.ended.Sub(signalled); took > timeout {
		t.Errorf("the event stream ended %s after SIGTERM, want within shutdown_timeout %s", took.Round(time.Millisecond), timeout)
	} else {
		t.Logf("the event stream ended %s after SIGTERM with %d events", took.Round(time.Millisecond), len(st.events))
	}
	if err := g.Wait(ctx); err != nil {
		t.Errorf("headgate's exit: %v, want status 0", err)
	}
	t.Logf("headgate exited %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))

	if err := g.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wantAPIStatus(t, g, prefix+"restarted", cookie, http.StatusOK, "the session started before the shutdown, after a restart")
	wantAPIStatus(t, g, prefix+"restarted-ended", ended, http.StatusUnauthorized, "the session signed out before the shutdown, after a restart")
}

// TestSSEStreamsThroughProxy checks that headgate passes Server-Sent Events on as they come:
// the first event arrives long before the stream ends, each event about when the upstream sent
// it.
func TestSSEStreamsThroughProxy(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	cookie := loginCookie(t, g, testbed.Alice, prefix+"login")
	const n, every = 6, 200 * time.Millisecond
	st := readEvents(withTimeout(t, 10*time.Second), g, prefix+"events?n=6&every=200ms", api(cookie), nil)
	if st.status != http.StatusOK || st.end != nil {
		t.Fatalf("got %d ending with %v, want 200 and a clean end", st.status, st.end)
	}
	if len(st.events) != n {
		t.Fatalf("got %d events %q, want %d", len(st.events), st.events, n)
	}
	for i, data := range st.events {
		if want := "event " + strconv.Itoa(i+1); data != want {
			t.Errorf("event %d: got %q, want %q", i+1, data, want)
		}
	}
	// The upstream sends event i at (i-1)*every; a buffering proxy would deliver all at the end.
	total := time.Duration(n-1) * every
	if st.at[0] > total/2 {
		t.Errorf("the first event arrived after %s, want well before the stream ends (%s)", st.at[0].Round(time.Millisecond), total)
	}
	for i := 1; i < n; i++ {
		if gap := st.at[i] - st.at[0]; gap < time.Duration(i)*every/2 {
			t.Errorf("event %d arrived %s after the first, want about %s", i+1, gap.Round(time.Millisecond), time.Duration(i)*every)
		}
	}
	t.Logf("events arrived at %v", st.at)
	checkReachedAs(t, upstreamSaw(prefix+"events"), testbed.Alice, accounts.Alice)
}
