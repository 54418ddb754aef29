package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Run keeps the local view current until ctx ends: it subscribes to the revocation channel (and
// subscribes again whenever the connection drops), applies revocations that failed while Redis
// was unreachable, and drops expired entries. When ctx ends it tries once more, for at most
// Timing.FlushTimeout, to apply the revocations still pending, and returns an error wrapping
// ErrUnavailable that counts those it could not (they are lost with this process), else nil.
// Call it once.
func (r *RedisStore) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	defer wg.Wait()
	retry, stopRetry := r.timing.Tick(r.timing.RetryInterval)
	defer stopRetry()
	prune, stopPrune := r.timing.Tick(r.timing.PruneInterval)
	defer stopPrune()
	for {
		select {
		case <-ctx.Done():
			return r.flushPending()
		case <-retry:
			r.applyPending(ctx)
		case <-r.kick:
			r.applyPending(ctx)
		case now := <-prune:
			r.prune(now)
		}
	}
}

// listen subscribes to the revocation channel until ctx ends.
func (r *RedisStore) listen(ctx context.Context) {
	wait := r.timing.ResubscribeMin
	for {
		established := r.subscribeOnce(ctx)
		r.subscribed.Store(false)
		if established {
			wait = r.timing.ResubscribeMin
		} else {
			wait = min(2*wait, r.timing.ResubscribeMax)
		}
		if !r.timing.sleep(ctx, wait) {
			return
		}
	}
}

// subscribeOnce holds one subscription until it fails or ctx ends, and reports whether it was
// established. Each time it is, the generation advances: revocations sent while there was none
// are lost, so every session confirmed before is looked up again before it is trusted.
func (r *RedisStore) subscribeOnce(ctx context.Context) (established bool) {
	ps := r.client.Subscribe(ctx, r.channel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	pinged := false
	for {
		// Quiet is fine; an unanswered ping or subscription is not.
		timeout := r.timing.PingInterval
		if pinged || !established {
			timeout = r.timing.PingTimeout
		}
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		if err != nil {
			// A quiet connection may be dead without an error; only a ping tells.
			if established && !pinged && isTimeout(err) {
				if ps.Ping(ctx) != nil {
					return established
				}
				pinged = true
				continue
			}
			return established
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == r.channel {
				r.gen.Add(1)
				r.subscribed.Store(true)
				established = true
				select {
				case r.kick <- struct{}{}:
				default:
				}
			}
		case *redis.Message:
			r.local.revoke(m.Payload, r.timing.Now().Add(r.timing.Tombstone))
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// applyPending retries the revocations Redis has not heard of; it stops at the first failure.
func (r *RedisStore) applyPending(ctx context.Context) {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return
	}
	ids := make([]string, 0, len(r.pending))
	for id := range r.pending {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	now := r.timing.Now()
	for _, id := range ids {
		r.mu.Lock()
		exp, ok := r.pending[id]
		r.mu.Unlock()
		if ok && now.Before(exp) {
			if _, err := r.announce(ctx, id); err != nil {
				_ = r.failed(ctx, "revoke session", err)
				return
			}
			r.up()
		}
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
}

// flushPending applies the pending revocations it can within FlushTimeout and reports the rest.
func (r *RedisStore) flushPending() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timing.FlushTimeout)
	defer cancel()
	r.applyPending(ctx)
	r.mu.Lock()
	n := len(r.pending)
	r.mu.Unlock()
	if n > 0 {
		return fmt.Errorf("%d sign-outs not shared with the other instances before exit: %w", n, ErrUnavailable)
	}
	return nil
}

// prune drops expired entries of the local view and expired pending revocations.
func (r *RedisStore) prune(now time.Time) {
	r.local.prune(now)
	r.mu.Lock()
	for id, exp := range r.pending {
		if !now.Before(exp) {
			delete(r.pending, id)
		}
	}
	r.mu.Unlock()
}
