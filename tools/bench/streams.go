package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"headgate/internal/testbed"
)

// The streams benchmark (-streams N): N concurrent signed-in streams, each carrying one
// message a second, through headgate (on Redis) and, side by side, through the tuned floor;
// first as event streams, then as WebSockets. Each measurement starts the target's process
// afresh, so that its RSS before the streams is its idle RSS; the rounds alternate the
// targets. It reports what a stream adds to each process's RSS and what it costs in CPU per
// second it is open, headgate's ratios to the floor, how long a sign-out takes to end all of
// one person's streams, and whether headgate's goroutines and streams return to their idle
// count once the streams close.

// streamTarget is a proxy the streams go through, restarted for each measurement.
type streamTarget struct {
	name    string
	addr    string // host:port
	restart func(ctx context.Context) (pid int, err error)
	// metricsURL is headgate's /metrics; empty for the floor, which has none.
	metricsURL string
	// signIn, for headgate, signs a fresh session in and returns its Cookie header; nil for
	// the floor.
	signIn func(ctx context.Context) (string, error)
}

// streamResult is one measurement of one target.
type streamResult struct {
	target *streamTarget
	kind   streamKind
	round  int
	// idleRSS and openRSS are the process's RSS before the streams and with them open;
	// closedRSS once they closed (the Go runtime returns freed memory to the system slowly).
	idleRSS, openRSS, closedRSS int64
	// cpu is the CPU time the process used while the streams were held open for hold.
	cpu  time.Duration
	hold time.Duration
	// messages is how many messages the clients received while held.
	messages int64
	streams  int
	// For headgate: goroutines idle, open and after the close (from go_goroutines), the
	// streams it still counted after the close, and the time from sending a sign-out to the
	// end of the last of that session's streams.
	idleG, openG, closedG int
	closedStreams         int
	// stack and heap are the Go runtime's stack and heap in use with the streams open
	// (go_memstats_stack_inuse_bytes, go_memstats_heap_inuse_bytes).
	stack, heap int64
	signOut     time.Duration
	signedOut   int
}

func (r streamResult) rssPerStream() float64 {
	return float64(r.openRSS-r.idleRSS) / float64(r.streams)
}

func (r streamResult) cpuPerStreamSecond() time.Duration {
	return time.Duration(float64(r.cpu) / (float64(r.streams) * r.hold.Seconds()))
}

// runStreams runs the streams benchmark and prints its report.
func runStreams(ctx context.Context, st settings, stdout io.Writer, logf func(string, ...any)) (err error) {
	// A proxy holds two sockets per stream, the client's and the upstream's; the clients and
	// the upstream are processes of their own, with one each.
	if most, err := mostStreams(); err != nil {
		return err
	} else if st.streams > most {
		logf("%d streams instead of %d: a proxy holds two sockets a stream, and the hard limit on open files (ulimit -Hn) allows %d", most, st.streams, most)
		st.streams = most
	}
	dir, err := os.MkdirTemp("", "headgate-bench-streams-")
	if err != nil {
		return fmt.Errorf("create the benchmark's directory: %w", err)
	}
	keep := st.keep
	defer func() {
		if keep || err != nil {
			fmt.Fprintf(os.Stderr, "bench: configurations and logs kept in %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to run the upstream and the floor: %w", err)
	}
	ports, err := testbed.FreePorts(3)
	if err != nil {
		return err
	}
	upURL := "http://" + testbed.HostPort(ports[2])
	up, err := testbed.StartProcess(ctx, "stream upstream", filepath.Join(dir, "stream-upstream.log"), upURL+"/", self,
		"-serve-streams", testbed.HostPort(ports[2]))
	if err != nil {
		return err
	}
	defer up.Stop()
	logf("starting Dex, Headscale and Redis")
	stack, err := testbed.Start(ctx, testbed.Options{Redis: true, MaxGateways: 1, Dir: dir, Logf: logf})
	if err != nil {
		return err
	}
	defer stack.Close()
	if _, err := stack.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email); err != nil {
		return err
	}
	metricsAddr := testbed.HostPort(ports[1])
	gw, err := stack.StartGateway(ctx, testbed.GatewayOptions{RedisKeyPrefix: "bench-streams:", Extra: map[string]any{
		"upstream": upURL, "log": map[string]any{"level": "warn"}, "metrics_listen": metricsAddr}})
	if err != nil {
		return err
	}
	signIn := func(ctx context.Context) (string, error) {
		jar := newJar()
		page, err := gw.Login(ctx, jar, testbed.Bob.Email, testbed.Bob.Password, "/")
		if err != nil {
			return "", err
		}
		if page.Status != http.StatusOK || page.Body != upstreamBody {
			return "", fmt.Errorf("sign-in ended with %d, not the upstream's page", page.Status)
		}
		return cookieHeader(jar, gw.URL), nil
	}
	logf("signing in %d sessions", st.streamSessions)
	cookies, err := signInMany(ctx, st.streamSessions, signIn)
	if err != nil {
		return err
	}

	// The floor sets the identity headers headgate sets and drops the same cookie.
	identity, err := identityThrough(ctx, gw.URL, cookies[0])
	if err != nil {
		return err
	}
	headers, _ := json.Marshal(identity)
	floorAddr := testbed.HostPort(ports[0])
	var floorProc *testbed.Process
	defer func() {
		if floorProc != nil {
			floorProc.Stop()
		}
	}()
	targets := []*streamTarget{
		{name: "headgate", addr: strings.TrimPrefix(gw.URL, "http://"), metricsURL: "http://" + metricsAddr + "/metrics", signIn: signIn,
			restart: func(ctx context.Context) (int, error) {
				if err := gw.Restart(ctx); err != nil {
					return 0, err
				}
				return listenerPID(strings.TrimPrefix(gw.URL, "http://"))
			}},
		{name: floorName, addr: floorAddr, restart: func(ctx context.Context) (int, error) {
			if floorProc != nil {
				floorProc.Stop()
			}
			p, err := testbed.StartProcess(ctx, floorName, filepath.Join(dir, "tuned-floor.log"), "http://"+floorAddr+"/", self,
				"-serve-bare", floorAddr, "-upstream", upURL, "-bare", "tuned", "-bare-headers", string(headers))
			if err != nil {
				return 0, err
			}
			floorProc = p
			return p.PID(), nil
		}},
	}

	if _, err := targets[1].restart(ctx); err != nil {
		return err
	}
	if got, err := identityThrough(ctx, "http://"+floorAddr, cookies[0]); err != nil {
		return err
	} else if !slices.Equal(got, identity) {
		return fmt.Errorf("the tuned floor sends %q, headgate %q", got, identity)
	}

	var results []streamResult
	for round := 1; round <= st.streamRounds; round++ {
		for _, kind := range []streamKind{kindEvents, kindSocket} {
			for i := range targets {
				t := targets[(i+round-1)%len(targets)]
				logf("round %d: %d %ss through %s", round, st.streams, kind, t.name)
				r, err := measureStreams(ctx, st, t, kind, cookies)
				if err != nil {
					return fmt.Errorf("%s, %ss: %w", t.name, kind, err)
				}
				r.round = round
				results = append(results, r)
			}
		}
	}
	var release string
	if st.streamRelease > 0 {
		if release, err = watchRelease(ctx, st.streamRelease, targets[0], results, logf); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout)
	printStreamResults(stdout, st, targets, results)
	if release != "" {
		fmt.Fprintln(stdout, release)
	}
	return nil
}

// watchRelease watches the RSS of headgate's process, whose streams of the last measurement
// closed, until it is back within a tenth of the streams' share of its idle RSS, or for at most
// limit, and describes how it fell.
func watchRelease(ctx context.Context, limit time.Duration, t *streamTarget, results []streamResult, logf func(string, ...any)) (string, error) {
	var last streamResult
	for _, r := range results {
		if r.target == t {
			last = r
		}
	}
	pid, err := listenerPID(t.addr)
	if err != nil {
		return "", err
	}
	logf("watching headgate's RSS fall back for up to %s", limit)
	start := time.Now()
	var rss int64
	for {
		if rss, err = currentRSS(pid); err != nil {
			return "", err
		}
		if rss <= last.idleRSS+(last.openRSS-last.idleRSS)/10 || time.Since(start) >= limit {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	return fmt.Sprintf("headgate's RSS after its last %ss closed: %s at once, %s %s later (idle %s, with the streams open %s).",
		last.kind, mib(last.closedRSS), mib(rss), time.Since(start).Round(time.Second), mib(last.idleRSS), mib(last.openRSS)), nil
}

// signInMany signs n sessions in, a few at a time.
func signInMany(ctx context.Context, n int, signIn func(context.Context) (string, error)) ([]string, error) {
	cookies := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cookies[i], errs[i] = signIn(ctx)
		})
	}
	wg.Wait()
	return cookies, errors.Join(errs...)
}

// measureStreams restarts t, opens st.streams streams of kind through it, holds them open for
// st.streamHold, and closes them. Through headgate, one session has a hundredth of the streams
// (at least one) and signs out while they are open.
func measureStreams(ctx context.Context, st settings, t *streamTarget, kind streamKind, cookies []string) (streamResult, error) {
	r := streamResult{target: t, kind: kind, hold: st.streamHold, streams: st.streams}
	pid, err := t.restart(ctx)
	if err != nil {
		return r, err
	}
	var (
		victim      string
		victimCount = max(1, st.streams/100)
	)
	if t.signIn != nil {
		if victim, err = t.signIn(ctx); err != nil {
			return r, fmt.Errorf("sign in the session to sign out: %w", err)
		}
	}
	time.Sleep(time.Second) // the process settles after its start and the sign-in
	if r.idleRSS, err = currentRSS(pid); err != nil {
		return r, err
	}
	if t.metricsURL != "" {
		m, err := testbed.ReadMetrics(ctx, t.metricsURL)
		if err != nil {
			return r, err
		}
		r.idleG = int(m["go_goroutines"])
	}

	clients := make([]*streamClient, st.streams)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	}()
	errs := make([]error, st.streams)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				cookie := cookies[i%len(cookies)]
				if victim != "" && i < victimCount {
					cookie = victim
				}
				clients[i], errs[i] = openStream(ctx, t.addr, kind, cookie)
			}
		})
	}
	for i := range st.streams {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return r, err
	}

	time.Sleep(3 * time.Second) // the streams settle after their opening burst
	if r.openRSS, err = currentRSS(pid); err != nil {
		return r, err
	}
	msgs0 := messages(clients)
	cpu0, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	time.Sleep(st.streamHold)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	r.cpu, r.messages = cpu1-cpu0, messages(clients)-msgs0
	if t.metricsURL != "" {
		m, err := testbed.ReadMetrics(ctx, t.metricsURL)
		if err != nil {
			return r, err
		}
		r.openG = int(m["go_goroutines"])
		r.stack, r.heap = int64(m["go_memstats_stack_inuse_bytes"]), int64(m["go_memstats_heap_inuse_bytes"])
		if got := int(m["headgate_streams"]); got != st.streams {
			return r, fmt.Errorf("headgate counts %d streams, want %d", got, st.streams)
		}
	}

	if victim != "" {
		if r.signOut, err = timeSignOut(ctx, t, victim, clients[:victimCount]); err != nil {
			return r, err
		}
		r.signedOut = victimCount
		for i, c := range clients[victimCount:] {
			select {
			case <-c.ended:
				return r, fmt.Errorf("stream %d of another session ended with the sign-out", victimCount+i)
			default:
			}
		}
	}

	for i, c := range clients {
		c.close()
		clients[i] = nil
	}
	if t.metricsURL != "" {
		// Streams and goroutines go back to their idle count within a few seconds.
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err := testbed.ReadMetrics(ctx, t.metricsURL)
			if err != nil {
				return r, err
			}
			r.closedG, r.closedStreams = int(m["go_goroutines"]), int(m["headgate_streams"])
			if r.closedStreams == 0 && r.closedG <= r.idleG || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.closedRSS, err = currentRSS(pid)
	return r, err
}

// timeSignOut signs the session of cookie out at t and returns the time until the last of its
// streams ended.
func timeSignOut(ctx context.Context, t *streamTarget, cookie string, streams []*streamClient) (time.Duration, error) {
	start := time.Now()
	page, err := testbed.Fetch(ctx, nil, http.MethodGet, "http://"+t.addr+"/oauth2/sign_out", http.Header{"Cookie": {cookie}})
	if err != nil {
		return 0, fmt.Errorf("sign out: %w", err)
	}
	if page.Status != http.StatusOK && page.Status != http.StatusFound {
		return 0, fmt.Errorf("sign out: got %d", page.Status)
	}
	var last time.Time
	timeout := time.After(30 * time.Second)
	for i, c := range streams {
		select {
		case <-c.ended:
			if c.endedAt.After(last) {
				last = c.endedAt
			}
		case <-timeout:
			return 0, fmt.Errorf("sign out: stream %d of the session still open after 30s", i)
		}
	}
	return last.Sub(start), nil
}

// messages is how many messages the clients have received.
func messages(clients []*streamClient) int64 {
	var n int64
	for _, c := range clients {
		n += c.messages.Load()
	}
	return n
}

// mostStreams is how many streams a proxy started from this process can hold: two sockets
// each, and a few hundred files besides, within the hard limit on open files. Go programs
// raise their soft limit to the hard limit by themselves; only a privileged process can raise
// the hard limit.
func mostStreams() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open file limit: %w", err)
	}
	return int(min(lim.Max, 1<<30)-200) / 2, nil
}
