package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"headgate/session"
)

// The sessions benchmark (-sessions N) measures session.RedisStore at scale against a real
// Redis: N live sessions, written as Create writes them, served by several store instances in
// this process, each with its own Redis client, pool and subscription, as separate gateways
// would have. It prints each instance's local view in bytes per session (the live heap
// before and after the instance checked every session once, with session IDs of its own, as
// decoded cookies would give it), the time to subscribe and to warm the view, the cost of
// looking every session up again on every instance after Redis drops their subscriptions (the
// commands, their rate and Redis's CPU), and how long a sign-out on one instance takes to
// stop the session on the others while they serve checks at full speed.

// sessionSettings are the flags of the sessions benchmark.
type sessionSettings struct {
	n           int
	instances   int
	redisAddr   string
	workers     int
	revocations int
	// load is the checks per second each instance serves while sign-outs are timed, and work
	// the computation after each, standing for the rest of a request.
	load float64
	work time.Duration
}

// sessionBench is one run of the sessions benchmark.
type sessionBench struct {
	st       sessionSettings
	prefix   string
	admin    *redis.Client
	redisPID int
	ids      []string
	expires  time.Time
	stores   []*benchStore
	logf     func(string, ...any)
}

// benchStore is one instance: a store with a client of its own whose commands are counted.
type benchStore struct {
	name   string
	client *redis.Client
	store  *session.RedisStore
	count  *commandCount
	// viewBytes is the live heap the instance's local view took after one check of every
	// session; started and warmed how long subscribing and that warm-up took.
	viewBytes       int64
	started, warmed time.Duration
	warmCommands    int64
}

// commandCount is a go-redis hook counting the commands a client sends and the round trips
// they take (a pipeline is one).
type commandCount struct {
	commands, trips atomic.Int64
}

func (h *commandCount) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.commands.Add(int64(len(cmds)))
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

func runSessions(ctx context.Context, st sessionSettings, stdout io.Writer, logf func(string, ...any)) (err error) {
	b := &sessionBench{st: st, prefix: "bench-sessions:" + session.NewID() + ":", logf: logf,
		admin: redis.NewClient(&redis.Options{Addr: st.redisAddr})}
	defer b.admin.Close()
	if err := b.admin.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis on %s: %w", st.redisAddr, err)
	}
	if b.redisPID, err = listenerPID(st.redisAddr); err != nil {
		return fmt.Errorf("find redis: %w", err)
	}
	defer func() {
		// A cancelled run still cleans up.
		n, cerr := b.deleteKeys(context.WithoutCancel(ctx))
		logf("deleted %d keys under %s", n, b.prefix)
		err = errors.Join(err, cerr)
	}()

	fill, err := b.fill(ctx)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var runs sync.WaitGroup
	defer runs.Wait()
	defer stop()
	for i := range st.instances {
		s, err := b.startStore(runCtx, &runs, i)
		if err != nil {
			return err
		}
		b.stores = append(b.stores, s)
	}
	for _, s := range b.stores {
		if err := b.warm(ctx, s); err != nil {
			return err
		}
	}
	gc := timeCollection()
	logf("a full garbage collection with every view warm: %s", gc)
	recheck, err := b.recheck(ctx)
	if err != nil {
		return err
	}
	spread, err := b.measureRevocations(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	b.print(stdout, fill, gc, recheck, spread)
	return nil
}

// fillResult is what writing the sessions cost.
type fillResult struct {
	took        time.Duration
	redisMemory int64 // Redis's used_memory added per session
}

// fill writes st.n sessions with a store of its own, as many sign-ins at once would, two
// sessions per person (each Create writes the record and adds it to its person's index).
func (b *sessionBench) fill(ctx context.Context) (fillResult, error) {
	mem0, err := b.usedMemory(ctx)
	if err != nil {
		return fillResult{}, err
	}
	client := redis.NewClient(&redis.Options{Addr: b.st.redisAddr, PoolSize: 64})
	defer client.Close()
	filler := session.NewRedisStore(client, b.prefix, session.DefaultTiming())
	b.expires = time.Now().Add(8 * time.Hour).Truncate(time.Second)
	b.ids = make([]string, b.st.n)
	for i := range b.ids {
		b.ids[i] = session.NewID()
	}
	began := time.Now()
	err = b.each(ctx, 64, b.st.n, func(i int) error {
		return filler.Create(ctx, &session.Session{ID: b.ids[i], Issuer: "https://idp.bench.example",
			Subject: "person-" + strconv.Itoa(i/2), IssuedAt: began, ExpiresAt: b.expires})
	})
	if err != nil {
		return fillResult{}, fmt.Errorf("fill: %w", err)
	}
	r := fillResult{took: time.Since(began)}
	mem1, err := b.usedMemory(ctx)
	if err != nil {
		return fillResult{}, err
	}
	r.redisMemory = (mem1 - mem0) / int64(b.st.n)
	b.logf("wrote %d sessions in %s (%.0f/s), Redis grew %d bytes per session",
		b.st.n, r.took.Round(time.Millisecond), float64(b.st.n)/r.took.Seconds(), r.redisMemory)
	return r, nil
}

// startStore starts instance i and waits until Redis lists its subscription.
func (b *sessionBench) startStore(ctx context.Context, runs *sync.WaitGroup, i int) (*benchStore, error) {
	s := &benchStore{name: fmt.Sprintf("%sinstance-%d", strings.ReplaceAll(b.prefix, ":", "-"), i), count: &commandCount{}}
	// The pool opens all its connections up front, so that their buffers are not counted as
	// the view's.
	s.client = redis.NewClient(&redis.Options{Addr: b.st.redisAddr, ClientName: s.name,
		PoolSize: b.st.workers, MinIdleConns: b.st.workers})
	s.client.AddHook(s.count)
	s.store = session.NewRedisStore(s.client, b.prefix, session.DefaultTiming())
	began := time.Now()
	runs.Go(func() {
		defer s.client.Close()
		if err := s.store.Run(ctx); err != nil {
			b.logf("%s: Run: %v", s.name, err)
		}
	})
	if _, err := b.waitSubscribed(ctx, s, 0); err != nil {
		return nil, err
	}
	s.started = time.Since(began)
	for limit := time.Now().Add(10 * time.Second); s.client.PoolStats().TotalConns < uint32(b.st.workers); time.Sleep(time.Millisecond) {
		if time.Now().After(limit) {
			return nil, fmt.Errorf("%s: the pool opened %d of %d connections within 10s", s.name, s.client.PoolStats().TotalConns, b.st.workers)
		}
	}
	return s, nil
}

// waitSubscribed waits until Redis lists a subscribed connection of s other than the one
// with ID old, and returns its ID.
func (b *sessionBench) waitSubscribed(ctx context.Context, s *benchStore, old int64) (int64, error) {
	limit := time.Now().Add(10 * time.Second)
	for time.Now().Before(limit) {
		ids, err := b.pubsubClients(ctx, s.name)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			if id != old {
				return id, nil
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("%s: not subscribed within 10s", s.name)
}

// pubsubClients lists the IDs of the connections named name that Redis counts subscribed.
func (b *sessionBench) pubsubClients(ctx context.Context, name string) ([]int64, error) {
	list, err := b.admin.ClientList(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("client list: %w", err)
	}
	var ids []int64
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] == name && fields["sub"] != "" && fields["sub"] != "0" {
			id, err := strconv.ParseInt(fields["id"], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("client list: id %q", fields["id"])
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// warm checks every session once on s, from b.st.workers requests at a time, each with an
// ID of its own as a decoded cookie has, and measures the live heap this left in s's view.
func (b *sessionBench) warm(ctx context.Context, s *benchStore) error {
	heap0 := liveHeap()
	c0 := s.count.commands.Load()
	began := time.Now()
	err := b.each(ctx, b.st.workers, b.st.n, func(i int) error {
		return s.store.Check(ctx, &session.Session{ID: strings.Clone(b.ids[i]), ExpiresAt: b.expires})
	})
	if err != nil {
		return fmt.Errorf("%s: warm: %w", s.name, err)
	}
	s.warmed = time.Since(began)
	s.warmCommands = s.count.commands.Load() - c0
	s.viewBytes = liveHeap() - heap0
	b.logf("%s: subscribed in %s, warmed in %s with %d commands, view %.0f bytes per session",
		s.name, s.started.Round(time.Microsecond), s.warmed.Round(time.Millisecond), s.warmCommands,
		float64(s.viewBytes)/float64(b.st.n))
	return nil
}

// timeCollection is the median time of a full garbage collection, over 5.
func timeCollection() time.Duration {
	var ds []time.Duration
	for range 5 {
		began := time.Now()
		runtime.GC()
		ds = append(ds, time.Since(began))
	}
	slices.Sort(ds)
	return ds[2]
}

// liveHeap is the heap that a full collection leaves.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// each calls f(i) for every i below n from workers goroutines and returns the first error.
func (b *sessionBench) each(ctx context.Context, workers, n int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	return cmpErr(first, ctx.Err())
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// usedMemory is Redis's used_memory.
func (b *sessionBench) usedMemory(ctx context.Context) (int64, error) {
	info, err := b.admin.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis info memory: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("redis info memory: no used_memory")
}

// deleteKeys deletes every key under the benchmark's prefix.
func (b *sessionBench) deleteKeys(ctx context.Context) (int, error) {
	n := 0
	iter := b.admin.Scan(ctx, 0, b.prefix+"*", 10000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := b.admin.Unlink(ctx, batch...).Err()
		n += len(batch)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, fmt.Errorf("delete keys: %w", err)
			}
		}
	}
	if err := errors.Join(flush(), iter.Err()); err != nil {
		return n, fmt.Errorf("delete keys: %w", err)
	}
	return n, nil
}

// randomSession returns a session of the benchmark's with an ID of its own.
func (b *sessionBench) randomSession(r *rand.Rand) *session.Session {
	return &session.Session{ID: strings.Clone(b.ids[r.IntN(len(b.ids))]), ExpiresAt: b.expires}
}
