package gateway

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"headgate/session"
)

// streamRegistry keeps the streams being proxied, grouped by the session that opened them, and
// ends them: every one when the gateway drains, and all of a session's when a check finds that
// session ended. A stream costs no goroutine and no timer of its own: one sweeper checks each
// session once per StreamCheck however many streams it has. The sweeper runs only while a
// stream with a session is open, so an idle gateway, or a drained one, runs none.
type streamRegistry struct {
	store  Store
	timing Timing

	mu sync.Mutex
	// drained is set by drain; a stream registered after it is ended at once.
	drained bool
	// sessions holds the streams of authenticated requests by session ID; unchecked holds
	// skip_auth streams, which have no session and end only on drain. A group is never empty.
	sessions  map[string]*streamGroup
	unchecked streamGroup
	// stopSweep stops the running sweeper; nil when none runs.
	stopSweep func()
}

// streamGroup is the streams of one session (or, with session nil, the unchecked ones).
type streamGroup struct {
	session *session.Session // the session as the first of its streams proved it
	// recheck, when set, checks the session instead of the store: a tailnet device's.
	recheck func(context.Context) error
	streams []*stream
}

// check reports whether g's session still stands: an error that is not ErrUnavailable says
// it ended.
func (g *streamGroup) check(ctx context.Context, store Store) error {
	if g.recheck != nil {
		return g.recheck(ctx)
	}
	return store.Check(ctx, g.session)
}

// stream is one proxied stream: body is its upstream body, closed to end it.
type stream struct {
	body    io.Closer
	session *session.Session // nil for a skip_auth stream
	// recheck, when set, is how session is checked instead of asking the store: the stream
	// of a request signed in by its tailnet device is checked against the device.
	recheck func(context.Context) error
	// ended is set before the registry closes body, so a read that fails because of it knows.
	ended atomic.Bool

	// group and index place the stream in the registry, under its mu; group is nil once the
	// stream has left it.
	group *streamGroup
	index int
}

func newStreamRegistry(store Store, timing Timing) *streamRegistry {
	return &streamRegistry{store: store, timing: timing, sessions: make(map[string]*streamGroup)}
}

// add registers s, and starts the sweeper if s is the first stream with a session. The
// sweeper's first check comes within one StreamCheck of add, before s's first byte reaches
// the client. After drain, add ends s instead.
func (r *streamRegistry) add(s *stream) {
	r.mu.Lock()
	if r.drained {
		r.mu.Unlock()
		s.end()
		return
	}
	if s.session == nil {
		r.unchecked.add(s)
		r.mu.Unlock()
		return
	}
	g := r.sessions[s.session.ID]
	if g == nil {
		g = &streamGroup{session: s.session, recheck: s.recheck}
		r.sessions[s.session.ID] = g
	}
	g.add(s)
	if r.stopSweep == nil {
		tick, stopTick := r.timing.Tick(r.timing.StreamCheck)
		quit := make(chan struct{})
		r.stopSweep = func() { stopTick(); close(quit) }
		go r.sweep(tick, quit)
	}
	r.mu.Unlock()
}

// remove takes s out of the registry, when the proxy closes its body. It may be called more
// than once, and for a stream the registry already ended.
func (r *streamRegistry) remove(s *stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := s.group
	if g == nil {
		return
	}
	g.remove(s)
	if len(g.streams) == 0 && g.session != nil {
		delete(r.sessions, g.session.ID)
		r.stopIdle()
	}
}

// drain ends every registered stream, and has add end every later one.
func (r *streamRegistry) drain() {
	r.mu.Lock()
	r.drained = true
	ending := r.unchecked.take()
	for id, g := range r.sessions {
		ending = append(ending, g.take()...)
		delete(r.sessions, id)
	}
	r.stopIdle()
	r.mu.Unlock()
	for _, s := range ending {
		s.end()
	}
}

// sweep checks the sessions at each tick until quit is closed.
func (r *streamRegistry) sweep(tick <-chan time.Time, quit <-chan struct{}) {
	var groups []*streamGroup // reused from one tick to the next
	for {
		select {
		case <-quit:
			return
		case <-tick:
			groups = r.check(groups[:0])
		}
	}
}

// streamCheckWorkers bounds the checks of one round that run at once. A check the store answers
// from its local view takes a fraction of a microsecond, but after a lost subscription each one
// asks Redis, and the store sends concurrent lookups together: one at a time, a round of
// thousands of sessions would outlast StreamCheck.
const streamCheckWorkers = 16

// check checks each session with a stream once, up to streamCheckWorkers at a time, and ends
// the streams of those that ended. A store that cannot answer ends none: the sessions were
// proven, and availability fails soft. The whole round is bounded by StreamCheck, and no
// goroutine of it outlives it. It returns groups, which it filled.
func (r *streamRegistry) check(groups []*streamGroup) []*streamGroup {
	r.mu.Lock()
	for _, g := range r.sessions {
		groups = append(groups, g)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.timing.StreamCheck)
	defer cancel()
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1)) - 1; i < len(groups); i = int(next.Add(1)) - 1 {
			// g.session and g.recheck never change: read without the lock.
			if err := groups[i].check(ctx, r.store); err != nil && !errors.Is(err, session.ErrUnavailable) {
				r.endSession(groups[i].session.ID)
			}
		}
	}
	var wg sync.WaitGroup
	for range min(streamCheckWorkers, len(groups)) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	clear(groups) // not kept alive until the next round
	return groups
}

// endSession ends the streams of the session with this ID.
func (r *streamRegistry) endSession(id string) {
	r.mu.Lock()
	g := r.sessions[id]
	if g == nil {
		r.mu.Unlock()
		return
	}
	delete(r.sessions, id)
	ending := g.take()
	r.stopIdle()
	r.mu.Unlock()
	for _, s := range ending {
		s.end()
	}
}

// stopIdle stops the sweeper once no stream with a session is left. r.mu is held.
func (r *streamRegistry) stopIdle() {
	if len(r.sessions) == 0 && r.stopSweep != nil {
		r.stopSweep()
		r.stopSweep = nil
	}
}

// count reports how many streams are registered.
func (r *streamRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.unchecked.streams)
	for _, g := range r.sessions {
		n += len(g.streams)
	}
	return n
}

func (g *streamGroup) add(s *stream) {
	s.group, s.index = g, len(g.streams)
	g.streams = append(g.streams, s)
}

// remove takes s out of g in constant time, moving g's last stream into its place.
func (g *streamGroup) remove(s *stream) {
	last := g.streams[len(g.streams)-1]
	g.streams[s.index], last.index = last, s.index
	g.streams[len(g.streams)-1] = nil
	g.streams = g.streams[:len(g.streams)-1]
	s.group = nil
}

// take empties g and returns the streams it held, which have left the registry.
func (g *streamGroup) take() []*stream {
	taken := g.streams
	for _, s := range taken {
		s.group = nil
	}
	g.streams = nil
	return taken
}

// end closes the stream's upstream body, which unblocks a pending read.
func (s *stream) end() {
	s.ended.Store(true)
	s.body.Close()
}
