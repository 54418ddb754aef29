package session

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const redisAddr = "127.0.0.1:6379"

// testRedis connects to the Redis the tests need, failing with instructions when it is absent.
// It returns the client and a key prefix of the test's own, removed when the test ends.
func testRedis(t testing.TB, opts ...func(*redis.Options)) (*redis.Client, string) {
	t.Helper()
	o := &redis.Options{Addr: redisAddr, DialTimeout: time.Second}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("these tests need Redis on %s (start one with: redis-server --daemonize yes --port 6379 --save \"\"): %v", redisAddr, err)
	}
	prefix := "test:session:" + NewID() + ":"
	t.Cleanup(func() {
		deletePrefix(t, c, prefix)
		c.Close()
	})
	return c, prefix
}

// deletePrefix deletes every key under prefix, as a restart of Redis without persistence would.
func deletePrefix(t testing.TB, c *redis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			t.Errorf("clean up %s: %v", prefix, err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("clean up %s: %v", prefix, err)
	}
}

// commandCounter is a go-redis hook that counts the commands and dials a client makes.
type commandCounter struct {
	commands atomic.Int64
	dials    atomic.Int64
}

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.dials.Add(1)
		return next(ctx, network, addr)
	}
}

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// run runs the store's Run until the test ends, and checks that it returns nil when stopped.
func run(t testing.TB, store interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	})
}

// quickTiming is the real clock with the waits on Redis shortened, for tests that wait for a
// real connection to come back or fail: they poll for the outcome instead of sleeping through
// a second. An answer from Redis is still awaited for the default PingTimeout, so that a slow
// machine does not end a healthy subscription.
func quickTiming() Timing {
	return Timing{
		DownFor:        10 * time.Millisecond,
		ResubscribeMin: 5 * time.Millisecond,
		ResubscribeMax: 20 * time.Millisecond,
		RetryInterval:  10 * time.Millisecond,
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// shareSession creates s on a and checks that b, another instance, finds it live.
func shareSession(t testing.TB, a, b *RedisStore, s *Session) {
	t.Helper()
	ctx := context.Background()
	if err := a.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx, s); err != nil {
		t.Fatalf("the other instance before the session ended: got %v, want nil", err)
	}
}

// subscribedStore returns a RedisStore on client, keeping time as timing says, whose Run is
// going and subscribed.
func subscribedStore(t testing.TB, client redis.UniversalClient, prefix string, timing Timing) *RedisStore {
	t.Helper()
	r := NewRedisStore(client, prefix, timing)
	run(t, r)
	waitSubscribed(t, r, 0)
	return r
}

// waitSubscribed waits until the store's subscription generation is past gen.
func waitSubscribed(t testing.TB, r *RedisStore, gen uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, "subscription", func() bool { return r.subscribed.Load() && r.gen.Load() > gen })
}

// tcpProxy forwards connections to a target address. Stopping it closes its listener and every
// connection, which is what clients see when Redis restarts; starting it again listens on the
// same address.
type tcpProxy struct {
	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// blackhole drops every byte in both directions while keeping connections open, as a
	// network that silently lost the peer does.
	blackhole atomic.Bool
	// pings counts the PING commands clients sent through the proxy.
	pings atomic.Int64
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *tcpProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.copy(server, client, &p.pings); server.Close() })
	wg.Go(func() { p.copy(client, server, nil); client.Close() })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// copy forwards src to dst until either fails; pings, if not nil, counts the PING commands
// among what it forwards (a command split across two reads goes uncounted).
func (p *tcpProxy) copy(dst io.Writer, src io.Reader, pings *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && pings != nil {
			pings.Add(int64(bytes.Count(bytes.ToLower(buf[:n]), []byte("\r\nping\r\n"))))
		}
		if n > 0 && !p.blackhole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// track registers both ends, or closes them if the proxy was stopped meanwhile.
func (p *tcpProxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		a.Close()
		b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// defaulted returns c with its defaults applied, as loading gateway.yaml applies them before
// anything is built from it.
func defaulted[C any, P interface {
	*C
	SetDefaults()
}](c C) C {
	P(&c).SetDefaults()
	return c
}
