package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"headgate/session"
)

// TestSessionStreamsEndTogether: all the streams of one session, event streams and upgraded
// connections alike, end at the first check after its sign-out, and leave the registry; another
// session's stream goes on.
func TestSessionStreamsEndTogether(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.upstream = streamingUpstream() })
	withAlice(e)
	ending, other := e.signedInWithSID(t, "sid-ending"), e.signedInWithSID(t, "sid-other")
	var events, sockets []io.Reader
	for range 20 {
		events = append(events, openEvents(t, e, ending))
	}
	for range 5 {
		_, r := openSocket(t, e, ending)
		sockets = append(sockets, r)
	}
	kept := openEvents(t, e, other)
	if got, want := e.gw.streams.count(), 26; got != want {
		t.Fatalf("streams registered: got %d, want %d", got, want)
	}

	if resp := e.get(t, "/oauth2/sign_out", ending); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-out: got %d", resp.StatusCode)
	}
	e.clock.Advance(e.gw.timing.StreamCheck)
	for i, r := range events {
		if _, err := untilEnd(t, fmt.Sprintf("event stream %d", i), r, 10*time.Second); err != nil {
			t.Errorf("event stream %d ended with %v, want a clean end", i, err)
		}
	}
	for i, r := range sockets {
		untilEnd(t, fmt.Sprintf("upgraded connection %d", i), r, 10*time.Second)
	}
	waitFor(t, "the ended streams leave the registry", func() bool { return e.gw.streams.count() == 1 })

	for range 2 {
		e.clock.Advance(e.gw.timing.StreamCheck)
	}
	nextEvent(t, "another session's event stream", kept)
}

// TestClosedStreamsLeaveTheRegistry: a stream the client closes leaves the registry, whether
// it has a session or not, and once none is left the sweeper stops.
func TestClosedStreamsLeaveTheRegistry(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.upstream = streamingUpstream(); o.memory = true })
	withAlice(e)
	h := e.signedInWithSID(t, "sid-1")
	var open []io.Closer
	for range 3 {
		body, _ := openEventsAt(t, e, "/events", h)
		open = append(open, body)
	}
	conn, _ := openSocket(t, e, h)
	open = append(open, conn)
	public, _ := openEventsAt(t, e, "/admin/assets/events", nil) // skip_auth
	open = append(open, public)
	if got, want := e.gw.streams.count(), 5; got != want {
		t.Fatalf("streams registered: got %d, want %d", got, want)
	}
	if got := sweepers(); got != 1 {
		t.Fatalf("sweepers with streams open: got %d, want 1", got)
	}
	for _, c := range open {
		c.Close()
	}
	waitFor(t, "the closed streams leave the registry", func() bool { return e.gw.streams.count() == 0 })
	waitFor(t, "the sweeper stops", func() bool { return sweepers() == 0 })
}

// TestStreamsRunNoGoroutineOfTheirOwn: however many streams are open, of however many sessions,
// the gateway runs one goroutine to watch them all, the sweeper.
func TestStreamsRunNoGoroutineOfTheirOwn(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.upstream = streamingUpstream(); o.memory = true })
	withAlice(e)
	var sessions []http.Header
	for i := range 4 {
		sessions = append(sessions, e.signedInWithSID(t, fmt.Sprintf("sid-%d", i)))
	}
	before := gatewayGoroutines()
	for _, h := range sessions {
		for range 10 {
			openEvents(t, e, h)
		}
		openSocket(t, e, h)
	}
	if got, want := e.gw.streams.count(), 44; got != want {
		t.Fatalf("streams registered: got %d, want %d", got, want)
	}
	if got := gatewayGoroutines() - before; got > 1 {
		t.Errorf("goroutines the gateway started for 44 streams: got %d, want at most 1 (the sweeper)", got)
	}
	if got := sweepers(); got != 1 {
		t.Errorf("sweepers: got %d, want 1", got)
	}
}

// TestStreamCheck: a round of checks asks the store once per session, however many streams it
// has; it ends the streams of an ended session only, not those of a session the store cannot
// answer for, nor skip_auth streams, which only a drain ends, as it ends every later one.
func TestStreamCheck(t *testing.T) {
	clock := newFakeClock(t)
	memory := session.NewMemoryStore(clock.storeTiming())
	store := &countingStore{Store: memory}
	live := &session.Session{ID: "live", ExpiresAt: clock.Now().Add(time.Hour)}
	if err := memory.Create(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	r := newStreamRegistry(store, clock.timing().withDefaults())
	t.Cleanup(r.drain)
	open := func(n int, s *session.Session) []*closeRecorder {
		var bodies []*closeRecorder
		for range n {
			b := &closeRecorder{}
			r.add(&stream{body: b, session: s})
			bodies = append(bodies, b)
		}
		return bodies
	}
	liveBodies := open(10, live)
	endedBodies := open(10, &session.Session{ID: "ended", ExpiresAt: clock.Now().Add(time.Hour)})
	publicBodies := open(3, nil)

	r.check(nil)
	if got, want := store.checks.Load(), int32(2); got != want {
		t.Errorf("checks in a round: got %d, want %d, one per session", got, want)
	}
	wantClosed(t, "the ended session's streams", endedBodies, true)
	wantClosed(t, "the live session's streams", liveBodies, false)
	wantClosed(t, "skip_auth streams", publicBodies, false)
	if got, want := r.count(), 13; got != want {
		t.Errorf("streams registered: got %d, want %d", got, want)
	}

	memory.Revoke(context.Background(), live)
	store.fail = fmt.Errorf("check session: %w", session.ErrUnavailable)
	r.check(nil)
	wantClosed(t, "streams the store cannot answer for", liveBodies, false)

	r.drain()
	wantClosed(t, "the live session's streams after the drain", liveBodies, true)
	wantClosed(t, "skip_auth streams after the drain", publicBodies, true)
	wantClosed(t, "a stream opened after the drain", open(1, live), true)
	if got := r.count(); got != 0 {
		t.Errorf("streams registered after the drain: got %d, want 0", got)
	}
}

// countingStore counts the checks of a real store, and answers fail instead when it is set.
type countingStore struct {
	Store
	checks atomic.Int32
	fail   error
}

func (s *countingStore) Check(ctx context.Context, sess *session.Session) error {
	s.checks.Add(1)
	if s.fail != nil {
		return s.fail
	}
	return s.Store.Check(ctx, sess)
}

// closeRecorder is a stream's upstream body that records whether it was closed.
type closeRecorder struct{ closed atomic.Bool }

func (b *closeRecorder) Close() error {
	b.closed.Store(true)
	return nil
}

func wantClosed(t *testing.T, what string, bodies []*closeRecorder, want bool) {
	t.Helper()
	for i, b := range bodies {
		if got := b.closed.Load(); got != want {
			t.Errorf("%s: body %d closed %v, want %v", what, i, got, want)
			return
		}
	}
}

// gatewayGoroutines counts the goroutines that the gateway's own code started: not the test's,
// nor those of the HTTP servers and the reverse proxy, which a bare proxy runs as well.
func gatewayGoroutines() int {
	n := 0
	for _, g := range goroutineStacks() {
		_, creator, _ := strings.Cut(g, "\ncreated by ")
		if strings.HasPrefix(creator, "headgate/gateway.") && !strings.Contains(creator, "_test.go:") {
			n++
		}
	}
	return n
}

// sweepers counts the goroutines sweeping a stream registry, of any gateway.
func sweepers() int {
	n := 0
	for _, g := range goroutineStacks() {
		if strings.Contains(g, "headgate/gateway.(*streamRegistry).sweep(") {
			n++
		}
	}
	return n
}

// goroutineStacks returns the stack of every goroutine.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestStreamCheckRunsChecksTogether: the checks of one round run side by side, so that a
// round whose checks each wait on Redis (after a lost subscription) does not take their sum:
// a store that answers only once 16 checks are waiting at once lets the round through.
func TestStreamCheckRunsChecksTogether(t *testing.T) {
	clock := newFakeClock(t)
	store := &gatheringStore{want: streamCheckWorkers, all: make(chan struct{})}
	r := newStreamRegistry(store, clock.timing().withDefaults())
	t.Cleanup(r.drain)
	var bodies []*closeRecorder
	for i := range 40 {
		b := &closeRecorder{}
		r.add(&stream{body: b, session: &session.Session{ID: fmt.Sprint("s", i), ExpiresAt: clock.Now().Add(time.Hour)}})
		bodies = append(bodies, b)
	}
	before := gatewayGoroutines()
	r.check(nil)
	if got := store.gathered.Load(); !got {
		t.Fatalf("no %d checks were under way at once", streamCheckWorkers)
	}
	if got, want := store.checks.Load(), int32(40); got != want {
		t.Errorf("checks in the round: got %d, want %d", got, want)
	}
	wantClosed(t, "the live sessions' streams", bodies, false)
	if got := gatewayGoroutines() - before; got > 0 {
		t.Errorf("goroutines of the round left after it: %d, want none", got)
	}
}

// gatheringStore answers every session live, but holds its first checks until want of them wait
// at once; a check whose context ends first (as in a round one at a time) stops waiting.
type gatheringStore struct {
	Store
	want     int
	waiting  atomic.Int32
	checks   atomic.Int32
	gathered atomic.Bool
	all      chan struct{}
}

func (s *gatheringStore) Check(ctx context.Context, _ *session.Session) error {
	s.checks.Add(1)
	if s.gathered.Load() {
		return nil
	}
	if int(s.waiting.Add(1)) == s.want {
		s.gathered.Store(true)
		close(s.all)
	}
	select {
	case <-s.all:
		return nil
	case <-ctx.Done():
		s.waiting.Add(-1)
		return fmt.Errorf("check session: %w: %w", session.ErrUnavailable, ctx.Err())
	}
}
