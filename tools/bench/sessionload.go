package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"headgate/session"
)

// recheckResult is what looking every session up again on every instance cost, after Redis
// dropped every instance's subscription at once.
type recheckResult struct {
	checks          int
	took            time.Duration
	commands, trips int64
	// redisCPU is the CPU time Redis used meanwhile; exists the EXISTS calls it counted (those
	// of any other client of the same Redis included).
	redisCPU time.Duration
	exists   int64
	// resubscribed is how long the instances took from the kill until Redis listed all their
	// new subscriptions.
	resubscribed time.Duration
	// p50 and p99 are the latencies of the checks.
	p50, p99 time.Duration
}

// recheck kills every instance's subscription (CLIENT KILL ID of each instance's subscribed
// connection, as a Redis restart or a network cut would) and, once they have subscribed again,
// checks every session once on every instance at once, b.st.workers requests at a time per instance, each instance in an
// order of its own: the worst case of a herd, every session requested everywhere at once.
func (b *sessionBench) recheck(ctx context.Context) (recheckResult, error) {
	var r recheckResult
	old := make([]int64, len(b.stores))
	for i, s := range b.stores {
		ids, err := b.pubsubClients(ctx, s.name)
		if err != nil {
			return r, err
		}
		if len(ids) != 1 {
			return r, fmt.Errorf("%s: %d subscribed connections, want 1", s.name, len(ids))
		}
		old[i] = ids[0]
	}
	began := time.Now()
	for _, id := range old {
		if err := b.admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			return r, fmt.Errorf("client kill: %w", err)
		}
	}
	for k, s := range b.stores {
		if _, err := b.waitSubscribed(ctx, s, old[k]); err != nil {
			return r, err
		}
	}
	r.resubscribed = time.Since(began)
	// Redis lists a subscription a moment before the store reads its confirmation.
	time.Sleep(100 * time.Millisecond)
	stats0, err := commandStats(ctx, b.admin)
	if err != nil {
		return r, err
	}
	cpu0, err := cpuTime(b.redisPID)
	if err != nil {
		return r, err
	}
	var c0, t0 int64
	for _, s := range b.stores {
		c0 += s.count.commands.Load()
		t0 += s.count.trips.Load()
	}
	began = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(b.stores))
	lat := make([][]time.Duration, len(b.stores))
	for k, s := range b.stores {
		wg.Go(func() {
			offset := k * b.st.n / len(b.stores)
			var mu sync.Mutex
			errs[k] = b.each(ctx, b.st.workers, b.st.n, func(i int) error {
				sess := &session.Session{ID: b.ids[(i+offset)%b.st.n], ExpiresAt: b.expires}
				t := time.Now()
				err := s.store.Check(ctx, sess)
				d := time.Since(t)
				mu.Lock()
				lat[k] = append(lat[k], d)
				mu.Unlock()
				return err
			})
		})
	}
	wg.Wait()
	r.took = time.Since(began)
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("recheck: %w", err)
	}
	r.checks = b.st.n * len(b.stores)
	for _, s := range b.stores {
		r.commands += s.count.commands.Load()
		r.trips += s.count.trips.Load()
	}
	r.commands -= c0
	r.trips -= t0
	cpu1, err := cpuTime(b.redisPID)
	if err != nil {
		return r, err
	}
	r.redisCPU = cpu1 - cpu0
	stats1, err := commandStats(ctx, b.admin)
	if err != nil {
		return r, err
	}
	r.exists = stats1["exists"] - stats0["exists"]
	all := slices.Concat(lat...)
	slices.Sort(all)
	r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	b.logf("recheck: %d checks on %d instances in %s: %d commands in %d round trips (%.0f/s), Redis CPU %s (%.0f%% of a core), EXISTS %d, resubscribed within %s",
		r.checks, len(b.stores), r.took.Round(time.Millisecond), r.commands, r.trips, float64(r.commands)/r.took.Seconds(),
		r.redisCPU, 100*r.redisCPU.Seconds()/r.took.Seconds(), r.exists, r.resubscribed.Round(time.Microsecond))
	return r, nil
}

// spreadResult is how long sign-outs took to stop their sessions on the other instances.
type spreadResult struct {
	revocations int
	// all are the times from Revoke until every other instance answered revoked; each those
	// until one other instance did.
	all, each []time.Duration
	// load is the checks per second the instances served meanwhile, and cpu the share of the
	// machine's CPUs this process used.
	load float64
	cpu  float64
}

// measureRevocations times sign-outs with the instances idle and under load, side by side:
// in alternating blocks of 50 it revokes 2×b.st.revocations sessions, the last ones, each on
// the next instance in turn, a hundred a second, while in every other block each instance
// serves b.st.load checks a second, each followed by b.st.work of computation standing for the
// rest of a request. It times each sign-out until every other instance's Check answers
// ErrRevoked, asked every 50µs from the moment before Revoke is called.
func (b *sessionBench) measureRevocations(ctx context.Context) ([2]spreadResult, error) {
	var r [2]spreadResult
	var took, cpu [2]time.Duration
	var served [2]int64
	const block = 50
	var l *load
	stop := func() error {
		if l == nil {
			return nil
		}
		err := l.stop()
		l = nil
		return err
	}
	defer stop()
	for j := range 2 * b.st.revocations {
		phase := j / block % 2
		if j%block == 0 {
			if err := stop(); err != nil {
				return r, err
			}
			if phase == 1 {
				l = b.startLoad(ctx)
				time.Sleep(200 * time.Millisecond) // the load settles
			}
		}
		began, cpu0, checks0 := time.Now(), processCPU(), l.served()
		all, each, err := b.timeRevocation(ctx, b.stores[j%len(b.stores)], b.ids[len(b.ids)-1-j])
		if err != nil {
			return r, err
		}
		time.Sleep(10 * time.Millisecond)
		took[phase] += time.Since(began)
		cpu[phase] += processCPU() - cpu0
		served[phase] += l.served() - checks0
		r[phase].all = append(r[phase].all, all)
		r[phase].each = append(r[phase].each, each...)
	}
	if err := stop(); err != nil {
		return r, err
	}
	for i := range r {
		r[i].revocations = len(r[i].all)
		r[i].load = float64(served[i]) / took[i].Seconds()
		r[i].cpu = cpu[i].Seconds() / took[i].Seconds() / float64(runtime.NumCPU())
		slices.Sort(r[i].all)
		slices.Sort(r[i].each)
		b.logf("revocations at %.0f checks/s: %d, all others stopped: p50 %s p99 %s max %s; CPU %.0f%%",
			r[i].load, r[i].revocations, pct(r[i].all, 50), pct(r[i].all, 99), r[i].all[len(r[i].all)-1], 100*r[i].cpu)
	}
	return r, nil
}

// load is checks served by every instance in the background.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	checks atomic.Int64
	once   sync.Once
	err    error
}

// served is how many checks l has served so far; a nil load has served none.
func (l *load) served() int64 {
	if l == nil {
		return 0
	}
	return l.checks.Load()
}

// stop ends l and reports the first unexpected answer it had.
func (l *load) stop() error {
	l.cancel()
	l.wg.Wait()
	if l.err != nil {
		return fmt.Errorf("load: %w", l.err)
	}
	return nil
}

// startLoad makes every instance serve b.st.load checks a second, each followed by b.st.work
// of computation, until it is stopped.
func (b *sessionBench) startLoad(ctx context.Context) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	const perInstance = 16
	interval := time.Duration(float64(time.Second) * perInstance / b.st.load)
	for _, s := range b.stores {
		for g := range perInstance {
			l.wg.Go(func() {
				rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(g)))
				var sink uint64
				defer func() { _ = sink }()
				for ctx.Err() == nil {
					next := time.Now().Add(interval)
					err := s.store.Check(ctx, b.randomSession(rng))
					if err != nil && !errors.Is(err, session.ErrRevoked) && ctx.Err() == nil {
						l.once.Do(func() { l.err = err })
					}
					l.checks.Add(1)
					sink += spin(b.st.work)
					time.Sleep(time.Until(next))
				}
			})
		}
	}
	return l
}

// timeRevocation revokes the session id on origin and reports how long it took until every
// other instance answered revoked, and until each did.
func (b *sessionBench) timeRevocation(ctx context.Context, origin *benchStore, id string) (time.Duration, []time.Duration, error) {
	each := make([]time.Duration, 0, len(b.stores)-1)
	var mu sync.Mutex
	var pollers sync.WaitGroup
	start := time.Now()
	for _, s := range b.stores {
		if s == origin {
			continue
		}
		pollers.Go(func() {
			sess := &session.Session{ID: id, ExpiresAt: b.expires}
			// A poller that never blocked would keep the scheduler from reading the network
			// between its preemptions, delaying the very message it waits for.
			for ctx.Err() == nil && !errors.Is(s.store.Check(ctx, sess), session.ErrRevoked) {
				time.Sleep(50 * time.Microsecond)
			}
			d := time.Since(start)
			mu.Lock()
			each = append(each, d)
			mu.Unlock()
		})
	}
	err := origin.store.Revoke(ctx, &session.Session{ID: id, ExpiresAt: b.expires})
	pollers.Wait()
	if err != nil {
		return 0, nil, fmt.Errorf("revoke: %w", err)
	}
	if ctx.Err() != nil {
		return 0, nil, ctx.Err()
	}
	return slices.Max(each), each, nil
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	d, _ := cpuTime(os.Getpid())
	return d
}

// spin computes for d, standing for the work of a request other than its session check.
func spin(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	end := time.Now().Add(d)
	x := uint64(1)
	for time.Now().Before(end) {
		for range 100 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}

// pct is the p-th percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, len(ds)*p/100)]
}
