package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk print its summary as one JSON line, which is easier to read reliably
// than its human report. Latencies are in microseconds.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`

// wrkSummary is the line wrkScript prints.
type wrkSummary struct {
	Requests   int64 `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	Connect    int64 `json:"connect"`
	Read       int64 `json:"read"`
	Write      int64 `json:"write"`
	Status     int64 `json:"status"`
	Timeout    int64 `json:"timeout"`
	P50US      int64 `json:"p50_us"`
	P99US      int64 `json:"p99_us"`
}

// runResult is one wrk run against one target.
type runResult struct {
	target   *target
	conns    int
	round    int
	requests int64
	rps      float64
	p50, p99 time.Duration
	// errors counts socket errors, answers other than 2xx and 3xx, and answers that did not
	// come from the upstream (a redirect to sign in, for one).
	errors int64
	// cpu is the CPU time the target's process used during the run.
	cpu time.Duration
}

// drive warms every target up, then runs wrk against each in interleaved rounds: for each
// round and connection count, every target once, in an order rotated by one each round.
func drive(ctx context.Context, st settings, wrk string, env *environment, logf func(string, ...any)) ([]runResult, error) {
	script := filepath.Join(env.stack.Dir, "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	maxConns := slices.Max(st.conns)
	for _, t := range env.targets {
		if _, err := runWrk(ctx, wrk, script, st, t, maxConns, st.warmup, env.upstream); err != nil {
			return nil, fmt.Errorf("warm up %s: %w", t.name, err)
		}
	}
	runs := st.rounds * len(st.conns) * len(env.targets)
	logf("%d wrk runs of %s each (%d rounds x %v connections x %d targets): about %s",
		runs, st.duration, st.rounds, st.conns, len(env.targets), (time.Duration(runs) * (st.duration + 500*time.Millisecond)).Round(time.Second))
	var results []runResult
	for round := 1; round <= st.rounds; round++ {
		for _, conns := range st.conns {
			// Each round starts one target later than the one before, so that no target always
			// runs right after the same neighbour (oauth2-proxy, for one, leaves thousands of
			// closed upstream connections in TIME_WAIT behind it).
			n := len(env.targets)
			for i := range n {
				t := env.targets[(i+round-1)%n]
				r, err := runWrk(ctx, wrk, script, st, t, conns, st.duration, env.upstream)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s at %d connections: %w", round, t.name, conns, err)
				}
				r.round = round
				logf("round %d  %-20s c=%-4d %9.0f req/s  p50 %-8s p99 %-8s errors %d",
					round, t.name, conns, r.rps, fmtDuration(r.p50), fmtDuration(r.p99), r.errors)
				results = append(results, r)
			}
		}
	}
	// A session that ran out during the load would have shown as errors; this says so plainly.
	for _, t := range env.targets {
		if err := checkTarget(ctx, t); err != nil {
			return nil, fmt.Errorf("after the load: %w", err)
		}
	}
	return results, nil
}

// runWrk drives t with wrk for d at conns connections.
func runWrk(ctx context.Context, wrk, script string, st settings, t *target, conns int, d time.Duration, up *upstream) (runResult, error) {
	threads := min(st.threads, conns)
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())), "-s", script}
	if t.cookie != "" {
		args = append(args, "-H", "Cookie: "+t.cookie)
	}
	args = append(args, t.url+"/")

	cpu0, err := cpuTime(t.pid)
	if err != nil {
		return runResult{}, err
	}
	hits0 := up.hits.Load()
	cmd := exec.CommandContext(ctx, wrk, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return runResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	hits := up.hits.Load() - hits0
	cpu1, err := cpuTime(t.pid)
	if err != nil {
		return runResult{}, err
	}

	var sum wrkSummary
	found := false
	for _, line := range strings.Split(out.String(), "\n") {
		if j, ok := strings.CutPrefix(line, "BENCH "); ok {
			if err := json.Unmarshal([]byte(j), &sum); err != nil {
				return runResult{}, fmt.Errorf("read wrk's summary %q: %w", j, err)
			}
			found = true
		}
	}
	if !found || sum.DurationUS <= 0 {
		return runResult{}, fmt.Errorf("wrk printed no summary:\n%s", out.String())
	}
	// The upstream may have served a few requests more than wrk counted (those still in
	// flight when wrk stopped), never fewer unless the gateway answered by itself.
	unproxied := max(0, sum.Requests-hits)
	return runResult{
		target:   t,
		conns:    conns,
		requests: sum.Requests,
		rps:      float64(sum.Requests) / (float64(sum.DurationUS) / 1e6),
		p50:      time.Duration(sum.P50US) * time.Microsecond,
		p99:      time.Duration(sum.P99US) * time.Microsecond,
		// An answer not from the upstream is also a status error when it is 4xx or 5xx.
		errors: sum.Connect + sum.Read + sum.Write + sum.Timeout + max(sum.Status, unproxied),
		cpu:    cpu1 - cpu0,
	}, nil
}
