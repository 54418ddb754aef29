// Command bench measures what headgate costs per request, side by side with the floor cost
// of any Go proxy (a bare httputil.ReverseProxy) and with oauth2-proxy, all in one run on
// 127.0.0.1 in front of the same small upstream and signed in through the same Dex:
//
//	cd tools/bench && go run . [-rounds 4] [-duration 5s] [-conns 32,128] [-headscale-users 100000]
//
// A second bare proxy pools the buffers it copies response bodies through, as headgate does:
// the floor for a Go proxy tuned that far. A third, the tuned floor, also does the proxy part
// of headgate's job with fixed values: it receives the same session cookie and drops it, and
// sets X-Forwarded-For, -Host and -Proto and the five identity headers headgate sets for the
// benchmark's person. headgate's ratios to it are the cost of everything else headgate does.
// A fourth, the timed floor, is the tuned floor that also bounds the wait for the upstream's
// response headers as headgate does by default (upstream_timeout, the transport's
// ResponseHeaderTimeout): what remains in headgate's ratios to it is the identity proof and
// the route.
//
// Every gateway gets a real session by a browser-like sign-in; then wrk drives each target
// in turn, in interleaved rounds at each connection count, so that the machine's noise falls
// on every target alike. It prints requests per second, latency, errors, CPU time per
// request and peak RSS of each target's process, each gateway's ratios to the bare proxy in
// the same round, and the Redis commands each Redis-backed gateway sends per request. With
// -headscale-users it also times the stack's real Headscale answering headgate's user listing
// at up to that many users; with -perf DIR it profiles every target under load with perf. Last,
// it times -signins sign-ins through each gateway, with the CPU each gateway and Dex spend.
//
// With -instructions D it also counts, under valgrind's callgrind, the user-space instructions
// per request of each Go proxy it can start again with the same session (the bare proxies, the
// floors and headgate with Redis), driving each for D: a count repeatable within about 1%,
// where CPU time moves by several percent with the machine (see instructions.go).
//
// With -sessions N it measures the Redis session store at scale instead, against a running
// Redis (see sessions.go):
//
//	cd tools/bench && go run . -sessions 1000000 [-sessions-redis 127.0.0.1:6379]
//
// With -streams N it measures long-lived streams instead (see streams.go):
//
//	cd tools/bench && go run . -streams 10000 [-stream-sessions 100] [-stream-rounds 2] [-stream-hold 20s]
//
// A proxy holds two sockets per stream, so N is bounded by the hard limit on open files
// (ulimit -Hn), which only a privileged process can raise: it runs (limit - 200) / 2 streams
// when N is more, and says so.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the command's flags.
type settings struct {
	duration      time.Duration
	rounds        int
	conns         []int
	threads       int
	warmup        time.Duration
	redisRequests int
	keep          bool
	// hold starts every target and waits instead of measuring (see holdTargets).
	hold bool
	// headscaleUsers, when not zero, also times the stack's Headscale listing that many users.
	headscaleUsers int
	// perfDir, when set, also profiles each target with perf into this directory.
	perfDir string
	// signIns is how many sign-ins to time through each gateway (0: none).
	signIns int
	// instructions, when not zero, also counts instructions per request under callgrind for
	// this long per target (see instructions.go).
	instructions time.Duration
	// sessions, when its n is not zero, runs the sessions benchmark instead (see sessions.go).
	sessions sessionSettings

	// serveBare and upstream run this binary as the bare proxy instead (see serveBare).
	serveBare string
	upstream  string
	// bareKind is the kind of bare proxy: plain, pooled or tuned (see serveBare).
	bareKind string
	// bareHeaders is the JSON list of [name, value] headers the tuned floor sets.
	bareHeaders string
	// serveStreams runs this binary as the streams' upstream instead (see serveStreams).
	serveStreams string

	// streams, when not zero, runs the streams benchmark instead (see streams.go) with this
	// many concurrent streams, of streamSessions sessions, in streamRounds rounds, each held
	// open for streamHold.
	streams        int
	streamSessions int
	streamRounds   int
	streamHold     time.Duration
	// streamRelease is how long, after the last round, headgate's RSS is watched fall back.
	streamRelease time.Duration
}

func parseFlags(args []string, stderr io.Writer) (settings, error) {
	var st settings
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&st.duration, "duration", 5*time.Second, "length of each wrk run, whole seconds")
	fs.IntVar(&st.rounds, "rounds", 4, "interleaved rounds over every target and connection count")
	conns := fs.String("conns", "32,128", "comma-separated wrk connection counts")
	fs.IntVar(&st.threads, "threads", 2, "wrk threads")
	fs.DurationVar(&st.warmup, "warmup", 2*time.Second, "unmeasured wrk run per target before the first round, whole seconds")
	fs.IntVar(&st.redisRequests, "redis-requests", 10000, "authenticated requests per Redis-backed gateway while counting Redis commands")
	fs.IntVar(&st.headscaleUsers, "headscale-users", 0, "also time Headscale listing 1,000, 10,000, ... up to this many users (0: skip)")
	fs.StringVar(&st.perfDir, "perf", "", "also profile each target with perf under load, writing profiles and reports into this directory "+
		"(the bare proxy's symbols need a go build of this program, not go run)")
	fs.DurationVar(&st.instructions, "instructions", 0, "also count each Go proxy's user-space instructions per request under valgrind's callgrind, "+
		"driving it this long (whole seconds; 0: skip): repeatable where CPU time is noisy")
	fs.IntVar(&st.signIns, "signins", 200, "sign-ins to time through each gateway, 4 at a time (0: skip)")
	fs.IntVar(&st.sessions.n, "sessions", 0, "instead, measure session.RedisStore with this many live sessions in Redis (see -sessions-*)")
	fs.StringVar(&st.sessions.redisAddr, "sessions-redis", "127.0.0.1:6379", "the Redis of -sessions (its keys get a prefix of their own and are deleted at the end)")
	fs.IntVar(&st.sessions.instances, "sessions-instances", 4, "store instances of -sessions")
	fs.IntVar(&st.sessions.workers, "sessions-workers", 64, "concurrent checks per instance while -sessions warms and re-checks")
	fs.IntVar(&st.sessions.revocations, "sessions-revocations", 1000, "sign-outs -sessions times with the instances idle, and as many under load")
	fs.Float64Var(&st.sessions.load, "sessions-load", 5000, "checks per second each instance serves while -sessions times sign-outs")
	fs.DurationVar(&st.sessions.work, "sessions-work", 50*time.Microsecond, "computation after each of those checks, standing for the rest of a request")
	fs.BoolVar(&st.keep, "keep", false, "keep the stack's configurations and logs")
	fs.BoolVar(&st.hold, "hold", false, "start and sign in at every target, print each one's URL, process and cookie, and wait until interrupted: "+
		"for measuring by hand (perf stat -p PID while wrk -H 'Cookie: ...' URL runs)")
	fs.StringVar(&st.serveBare, "serve-bare", "", "internal: serve the bare proxy on this address")
	fs.StringVar(&st.upstream, "upstream", "", "internal: the bare proxy's upstream URL")
	fs.StringVar(&st.bareKind, "bare", "plain", "internal: the kind of bare proxy: plain, pooled, tuned or timed")
	fs.StringVar(&st.bareHeaders, "bare-headers", "[]", "internal: the headers the tuned floor sets, as JSON [[name, value], ...]")
	fs.StringVar(&st.serveStreams, "serve-streams", "", "internal: serve the streams' upstream on this address")
	fs.IntVar(&st.streams, "streams", 0, "instead, measure this many concurrent event streams and WebSockets through headgate and the tuned floor (0: no)")
	fs.IntVar(&st.streamSessions, "stream-sessions", 100, "with -streams: the sessions the streams belong to")
	fs.IntVar(&st.streamRounds, "stream-rounds", 2, "with -streams: interleaved rounds over both targets and both kinds of stream")
	fs.DurationVar(&st.streamHold, "stream-hold", 20*time.Second, "with -streams: how long the streams are held open while CPU time is measured")
	fs.DurationVar(&st.streamRelease, "stream-release", 3*time.Minute, "with -streams: after the last round, how long to watch headgate's RSS fall back once its streams closed (0: not at all)")
	if err := fs.Parse(args); err != nil {
		return st, err
	}
	var problems []error
	for _, f := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			problems = append(problems, fmt.Errorf("-conns: %q is not a positive number", f))
			continue
		}
		st.conns = append(st.conns, n)
	}
	if st.rounds < 1 {
		problems = append(problems, errors.New("-rounds: must be at least 1"))
	}
	// wrk takes whole seconds.
	if st.duration < time.Second || st.duration%time.Second != 0 {
		problems = append(problems, errors.New("-duration: must be a whole number of seconds"))
	}
	if st.warmup < time.Second || st.warmup%time.Second != 0 {
		problems = append(problems, errors.New("-warmup: must be a whole number of seconds"))
	}
	if st.threads < 1 {
		problems = append(problems, errors.New("-threads: must be at least 1"))
	}
	if st.headscaleUsers < 0 {
		problems = append(problems, errors.New("-headscale-users: must not be negative"))
	}
	if st.instructions < 0 || st.instructions%time.Second != 0 {
		problems = append(problems, errors.New("-instructions: must be a whole number of seconds, or 0"))
	}
	if st.signIns < 0 {
		problems = append(problems, errors.New("-signins: must not be negative"))
	}
	if st.streams < 0 || st.streamSessions < 1 || st.streamRounds < 1 || st.streamHold < time.Second {
		problems = append(problems, errors.New("-streams: must not be negative, with -stream-sessions and -stream-rounds at least 1 and -stream-hold at least 1s"))
	}
	if st.redisRequests < 1 {
		problems = append(problems, errors.New("-redis-requests: must be at least 1"))
	}
	if st.sessions.n < 0 || st.sessions.n > 0 && (st.sessions.instances < 2 || st.sessions.workers < 1 ||
		st.sessions.revocations < 1 || 2*st.sessions.revocations > st.sessions.n || st.sessions.load <= 0) {
		problems = append(problems, errors.New("-sessions: needs N >= 0 and, with N, at least 2 instances, 1 worker, 1 to N/2 revocations and a positive load"))
	}
	return st, errors.Join(problems...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	st, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if st.serveStreams != "" {
		return serveStreams(ctx, st.serveStreams)
	}
	if st.serveBare != "" {
		var headers [][2]string
		if err := json.Unmarshal([]byte(st.bareHeaders), &headers); err != nil {
			return fmt.Errorf("-bare-headers: %w", err)
		}
		return serveBare(ctx, st.serveBare, st.upstream, st.bareKind, headers)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "bench: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if st.sessions.n > 0 {
		return runSessions(ctx, st.sessions, stdout, logf)
	}
	if st.streams > 0 {
		return runStreams(ctx, st, stdout, logf)
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk is not installed: apt-get install -y wrk (or make bench, which installs it)")
	}
	began := time.Now()
	env, err := startEnvironment(ctx, st, logf)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			env.keep = true // for a look at the logs
		}
		env.close()
	}()

	if st.hold {
		return holdTargets(ctx, stdout, env, logf)
	}
	m := describeMachine(ctx, wrk)
	fmt.Fprintln(stdout)
	m.print(stdout)

	results, err := drive(ctx, st, wrk, env, logf)
	if err != nil {
		return err
	}
	if st.perfDir != "" {
		if err := profileTargets(ctx, st, wrk, env, logf); err != nil {
			return err
		}
	}
	redisCounts, err := countRedisCommands(ctx, st, env, logf)
	if err != nil {
		return err
	}
	var instructions []instructionCount
	if st.instructions > 0 {
		// Counting needs valgrind to cope with each target; a failure there costs the count,
		// not the measurements before it.
		counts, countErr := countInstructions(ctx, st, wrk, env, logf)
		if countErr != nil {
			if ctx.Err() != nil {
				return countErr
			}
			logf("no instruction counts: %v", countErr)
		}
		instructions = counts
	}
	var signIns []signInResult
	if st.signIns > 0 {
		if signIns, err = timeSignIns(ctx, env, st.signIns, logf); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout)
	printResults(stdout, st, env.targets, results)
	fmt.Fprintln(stdout)
	printRedisCounts(stdout, redisCounts)
	if len(instructions) > 0 {
		fmt.Fprintln(stdout)
		printInstructions(stdout, st.instructions, instructions)
	}
	if len(signIns) > 0 {
		fmt.Fprintln(stdout)
		printSignIns(stdout, signIns)
	}
	if st.headscaleUsers > 0 {
		timings, err := timeUserListing(ctx, env, st.headscaleUsers, logf)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		printListTimings(stdout, timings)
	}
	logf("done in %s", time.Since(began).Round(time.Second))
	return nil
}
