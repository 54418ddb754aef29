package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipelineGate is a go-redis hook that holds every pipeline of EXISTS commands until release is
// closed, telling entered the size of each as it arrives. Other pipelines, such as a new
// connection's handshake, pass.
type pipelineGate struct {
	entered chan int
	release chan struct{}
}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() != "exists" {
			return next(ctx, cmds)
		}
		g.entered <- len(cmds)
		<-g.release
		return next(ctx, cmds)
	}
}

// TestLookupsShareRoundTrips: while every round trip is in flight, questions wait and then go
// together, in pipelines of at most maxBatch, each answered right; a caller whose context ends
// while it waits is answered at once; and the slots are all given back.
func TestLookupsShareRoundTrips(t *testing.T) {
	t.Parallel()
	c, prefix := testRedis(t)
	ctx := context.Background()
	key := func(i int) string { return fmt.Sprintf("%sk%d", prefix, i) }
	// Even keys exist.
	for i := 0; i < 102; i += 2 {
		if err := c.Set(ctx, key(i), "1", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	gate := &pipelineGate{entered: make(chan int, 200), release: make(chan struct{})}
	c.AddHook(gate)
	l := newLookups(c, 2, 40)

	type answer struct {
		exists bool
		err    error
	}
	answers := make([]answer, 102)
	var wg sync.WaitGroup
	ask := func(i int) {
		wg.Go(func() {
			exists, err := l.exists(ctx, key(i))
			answers[i] = answer{exists, err}
		})
	}
	// The first two questions each take a round trip, alone.
	for i := range 2 {
		ask(i)
		if n := <-gate.entered; n != 1 {
			t.Fatalf("round trip %d: got %d commands, want 1", i, n)
		}
	}
	for i := 2; i < 102; i++ {
		ask(i)
	}
	waitFor(t, 10*time.Second, "100 questions waiting", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.queue) == 100
	})
	// A caller that gives up while waiting is answered at once.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.exists(cancelled, key(0)); !errors.Is(err, context.Canceled) {
		t.Errorf("exists with an ended context: got %v, want context.Canceled", err)
	}
	close(gate.release)
	wg.Wait()
	for i, a := range answers {
		if a.err != nil || a.exists != (i%2 == 0) {
			t.Errorf("key %d: got %v, %v, want %v, nil", i, a.exists, a.err, i%2 == 0)
		}
	}
	// 101 waiting questions (the given-up one still asked) in pipelines of at most 40: three.
	sizes, total := 0, 0
	for len(gate.entered) > 0 {
		n := <-gate.entered
		if n > 40 {
			t.Errorf("a pipeline of %d commands, want at most 40", n)
		}
		sizes++
		total += n
	}
	if sizes != 3 || total != 101 {
		t.Errorf("after the first two: got %d pipelines of %d commands, want 3 of 101", sizes, total)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.trips != 0 || len(l.queue) != 0 {
		t.Errorf("at rest: got %d round trips in flight and %d questions waiting, want 0 and 0", l.trips, len(l.queue))
	}
}

// TestLookupsFailTogether: when Redis cannot be reached, every question of the round trip is
// answered with the error.
func TestLookupsFailTogether(t *testing.T) {
	t.Parallel()
	// A server that hangs up on every connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), DialTimeout: time.Second, MaxRetries: -1, Protocol: 2})
	defer c.Close()
	l := newLookups(c, 1, 10)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = l.exists(context.Background(), "k") })
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("question %d: got nil, want an error", i)
		}
	}
}
