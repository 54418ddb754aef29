package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCount is what one Redis-backed gateway asked of Redis over a fixed number of
// authenticated requests.
type redisCount struct {
	target   *target
	requests int
	// calls counts each command Redis ran meanwhile, by name, the benchmark's own INFO aside.
	calls map[string]int64
	// redisCPU is the CPU time Redis used meanwhile.
	redisCPU time.Duration
}

func (c redisCount) total() int64 {
	var n int64
	for _, v := range c.calls {
		n += v
	}
	return n
}

// countRedisCommands sends st.redisRequests authenticated requests to each Redis-backed
// gateway in turn, after a warm-up, and counts the commands Redis ran meanwhile (INFO
// commandstats before and after). The stack's Redis serves the benchmark alone, and the
// other gateways are idle meanwhile, so the counts are the gateway's own.
func countRedisCommands(ctx context.Context, st settings, env *environment, logf func(string, ...any)) ([]redisCount, error) {
	rdb := redis.NewClient(&redis.Options{Addr: env.redisAddr})
	defer rdb.Close()
	var counts []redisCount
	for _, t := range env.targets {
		if !t.redis {
			continue
		}
		if err := sendRequests(ctx, t, 200); err != nil {
			return nil, fmt.Errorf("warm up %s: %w", t.name, err)
		}
		before, err := commandStats(ctx, rdb)
		if err != nil {
			return nil, err
		}
		cpu0, err := cpuTime(env.redisPID)
		if err != nil {
			return nil, err
		}
		if err := sendRequests(ctx, t, st.redisRequests); err != nil {
			return nil, fmt.Errorf("count redis commands of %s: %w", t.name, err)
		}
		cpu1, err := cpuTime(env.redisPID)
		if err != nil {
			return nil, err
		}
		after, err := commandStats(ctx, rdb)
		if err != nil {
			return nil, err
		}
		c := redisCount{target: t, requests: st.redisRequests, calls: map[string]int64{}, redisCPU: cpu1 - cpu0}
		for name, n := range after {
			if d := n - before[name]; d > 0 && name != "info" {
				c.calls[name] = d
			}
		}
		logf("%s: %d redis commands for %d requests", t.name, c.total(), c.requests)
		counts = append(counts, c)
	}
	return counts, nil
}

// commandStats reads the number of calls of each command from INFO commandstats.
func commandStats(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis info commandstats: %w", err)
	}
	stats := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_get:calls=12,usec=34,usec_per_call=2.83,...
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("redis info commandstats: %q", line)
				}
				stats[name] = n
			}
		}
	}
	return stats, nil
}

// sendRequests sends n signed-in GET requests to t over 16 kept-alive connections and
// fails unless every one returns the upstream's page.
func sendRequests(ctx context.Context, t *target, n int) error {
	const workers = 16
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{MaxIdleConnsPerHost: workers},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := fetchOnce(ctx, client, t); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func fetchOnce(ctx context.Context, client *http.Client, t *target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+"/", nil)
	if err != nil {
		return err
	}
	if t.cookie != "" {
		req.Header.Set("Cookie", t.cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != upstreamBody {
		return fmt.Errorf("got %d, not the upstream's page", resp.StatusCode)
	}
	return nil
}

// commandList is "get 10000, expire 3" with the most frequent command first.
func (c redisCount) commandList() string {
	names := slices.Sorted(maps.Keys(c.calls))
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(c.calls[b], c.calls[a]) })
	var parts []string
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %d", name, c.calls[name]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
