package session

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// lookups asks Redis whether session records exist, sending the questions of concurrent checks
// together. A question asked while fewer than maxTrips round trips are in flight goes at once;
// one asked while they all are waits and then goes with the others that waited, as one
// pipeline of at most maxBatch EXISTS commands. So a lone check pays one round trip as before,
// and when every instance looks every session up again at once (after a lost subscription, or
// on a cold start), Redis answers a few pipelines per round trip instead of a command per
// connection: the same commands at a fraction of the round trips and of Redis's CPU, and no
// more than maxTrips connections per instance busy with them.
type lookups struct {
	client   redis.UniversalClient
	maxTrips int
	maxBatch int

	mu    sync.Mutex
	trips int // round trips in flight
	queue []*lookupCall
}

// lookupCall is one question and, once done is closed, its answer.
type lookupCall struct {
	key    string
	done   chan struct{}
	exists bool
	err    error
}

// Bounds of lookups: a few round trips in flight keep Redis and the connection busy while the
// next batch gathers; a batch past a few hundred commands only delays its first answer.
const (
	lookupTrips = 4
	lookupBatch = 256
)

func newLookups(client redis.UniversalClient, maxTrips, maxBatch int) *lookups {
	return &lookups{client: client, maxTrips: maxTrips, maxBatch: maxBatch}
}

// exists reports whether key exists. When ctx ends first it answers ctx's error; the question
// is still asked, with others, and its answer dropped.
func (l *lookups) exists(ctx context.Context, key string) (bool, error) {
	c := &lookupCall{key: key, done: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, c)
	send := l.trips < l.maxTrips
	if send {
		l.trips++
	}
	l.mu.Unlock()
	if send {
		l.send()
	}
	select {
	case <-c.done:
		return c.exists, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// send makes one round trip with the questions waiting, which include the caller's unless
// another round trip took it, and hands the trip's slot on: to a new goroutine when more
// questions wait, so that the caller is not held up by others' lookups, else back.
func (l *lookups) send() {
	l.mu.Lock()
	n := min(len(l.queue), l.maxBatch)
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil // let the array and the answered calls go
	}
	l.mu.Unlock()
	if n > 0 {
		l.ask(batch)
	}
	l.mu.Lock()
	more := len(l.queue) > 0
	if !more {
		l.trips--
	}
	l.mu.Unlock()
	if more {
		go l.send()
	}
}

// ask sends batch as one pipeline and answers each call. The pipeline does not end with any
// one caller's context: it answers the others too; the client's timeouts bound it.
func (l *lookups) ask(batch []*lookupCall) {
	ctx := context.Background()
	cmds := make([]*redis.IntCmd, len(batch))
	_, _ = l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			cmds[i] = p.Exists(ctx, c.key)
		}
		return nil
	})
	for i, c := range batch {
		n, err := cmds[i].Result()
		c.exists, c.err = n > 0, err
		close(c.done)
	}
}
