// Command headgate is an authentication gateway for Headscale and the apps around it: it signs
// people in with OpenID Connect, links each identity to their Headscale user and proxies their
// requests upstream with X-Headscale-User set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"headgate/gateway"
	"headgate/linker"
	"headgate/session"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// version is the release this binary was built as, when the build names one:
//
//	go build -ldflags "-X main.version=v1.2.0"
//
// Empty: versionText reports what Go recorded in the binary. Only the linker sets it.
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "headgate:", err)
		os.Exit(1)
	}
}

// redisLogger passes go-redis's own messages into headgate's log, at Warn: they report
// connections that failed or were dropped.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// backgroundStore is a session store with background work (revocation messages, pruning).
type backgroundStore interface {
	gateway.Store
	Run(ctx context.Context) error
}

const usage = `Usage:
  headgate [-config FILE]                         serve
  headgate [-config FILE] -check [-offline]       check the configuration, then reach the
                                                  identity provider, Headscale and Redis
  headgate healthcheck [-config FILE | -url URL]  ask a running headgate's /ping (exit 0: alive)
  headgate version                                print the version

Flags:
`

// run does what the command line asks: by default it loads the configuration and serves until
// ctx ends. Asked for help, it prints the usage on stdout and returns nil.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "version":
			info, _ := debug.ReadBuildInfo()
			fmt.Fprintln(stdout, versionText(version, info))
			return nil
		case "healthcheck":
			return healthcheck(ctx, args[2:], lookupEnv, stdout, stderr)
		}
	}
	flags := flag.NewFlagSet("headgate", flag.ContinueOnError)
	configPath := flags.String("config", "gateway.yaml", "the configuration `file`")
	checkOnly := flags.Bool("check", false, "check the configuration, then reach the identity provider, Headscale and\nRedis it names, print one line for each, and exit (non-zero if any FAIL)")
	offline := flags.Bool("offline", false, "with -check: check the configuration only, reaching nothing")
	showVersion := flags.Bool("version", false, "print the version and exit")
	if err := parseFlags(flags, args[1:], usage, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		info, _ := debug.ReadBuildInfo()
		fmt.Fprintln(stdout, versionText(version, info))
		return nil
	}
	if *offline && !*checkOnly {
		return errors.New("-offline goes with -check")
	}
	cfg, err := loadConfig(*configPath, lookupEnv)
	if err != nil {
		return err
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%-4s  %s: valid\n", gateway.CheckOK, *configPath)
		if *offline {
			return nil
		}
		return check(ctx, cfg, stdout)
	}
	return serve(ctx, cfg, stderr)
}

// parseFlags parses args into flags. Asked for help (-h, -help), it prints text and the flags'
// defaults on stdout and returns flag.ErrHelp; on a mistake, an argument that is not a flag
// among them, it prints them on stderr and returns the mistake.
func parseFlags(flags *flag.FlagSet, args []string, text string, stdout, stderr io.Writer) error {
	flags.SetOutput(io.Discard)
	err := flags.Parse(args)
	if err == nil && flags.NArg() > 0 {
		err = fmt.Errorf("unknown command %q", flags.Arg(0))
	}
	if err != nil {
		w := stderr
		if errors.Is(err, flag.ErrHelp) {
			w = stdout
		}
		fmt.Fprint(w, text)
		flags.SetOutput(w)
		flags.PrintDefaults()
	}
	return err
}

// versionText describes the build in one line: the version set at link time, else the module
// version Go recorded (a tag, a pseudo-version, or "(devel)"); then, when the build recorded
// them, the commit, its time, whether the checkout had uncommitted changes, and the Go release.
// A nil info (a binary without build information) leaves only the version.
func versionText(linked string, info *debug.BuildInfo) string {
	if info == nil {
		info = &debug.BuildInfo{}
	}
	v := linked
	if v == "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(unknown version)"
	}
	settings := make(map[string]string)
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	var details []string
	if r := settings["vcs.revision"]; r != "" {
		details = append(details, "commit "+r)
	}
	if t := settings["vcs.time"]; t != "" {
		details = append(details, t)
	}
	if settings["vcs.modified"] == "true" {
		details = append(details, "modified")
	}
	if info.GoVersion != "" {
		details = append(details, info.GoVersion)
	}
	if len(details) == 0 {
		return "headgate " + v
	}
	return "headgate " + v + " (" + strings.Join(details, ", ") + ")"
}

// healthcheck asks a running headgate whether it is alive: a GET of its /ping at -url, or on
// the listen address of the configuration (an unspecified address is asked on loopback). It
// prints one line when the answer is 200; any other answer, or none within -timeout, is its
// error. It needs no shell or other program, so a container built from scratch can run it.
func healthcheck(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	configPath := flags.String("config", "gateway.yaml", "ask /ping on the listen address of this configuration `file`")
	target := flags.String("url", "", "ask this `URL` instead, such as http://127.0.0.1:4180/ping")
	timeout := flags.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	const text = "Usage:\n  headgate healthcheck [-config FILE | -url URL] [-timeout DURATION]\n\nFlags:\n"
	err := parseFlags(flags, args, text, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	configSet := false
	flags.Visit(func(f *flag.Flag) { configSet = configSet || f.Name == "config" })
	u := *target
	if u != "" && configSet {
		return errors.New("healthcheck: give -config or -url, not both")
	}
	if u == "" {
		cfg, err := loadConfig(*configPath, lookupEnv)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		u = "http://" + localAddr(cfg.Listen) + "/ping"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", u, resp.Status)
	}
	fmt.Fprintf(stdout, "alive: %s answered %s\n", u, resp.Status)
	return nil
}

// localAddr returns the address at which this machine reaches a server listening on listen:
// an unspecified host (":4180", "0.0.0.0:4180", "[::]:4180") is reached on 127.0.0.1, which a
// Go server listening on any address also accepts.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// serve builds every dependency once, serves until ctx ends and then shuts down gracefully.
func serve(ctx context.Context, cfg *Config, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)

	var (
		store backgroundStore
		cache linker.Cache
	)
	storeTiming := session.DefaultTiming()
	if cfg.Redis.URL != "" {
		// go-redis reports connection trouble through a logger of its own, process-wide; in
		// headgate's log it keeps the configured format (a json log stays json).
		redis.SetLogger(redisLogger{log})
		client, err := newRedisClient(cfg.Redis)
		if err != nil {
			return err
		}
		defer client.Close()
		store = session.NewRedisStore(client, cfg.Redis.KeyPrefix, storeTiming)
		cache = linker.NewRedisCache(client, cfg.Redis.KeyPrefix)
	} else {
		log.Warn("no redis.url: sessions and links are kept in process; run exactly one instance")
		store = session.NewMemoryStore(storeTiming)
		cache = linker.NewMemoryCache(linker.Timing{})
	}

	hs := linker.NewHeadscale(cfg.Headscale, nil)
	links := linker.New(cfg.Link, hs, cache, linker.Timing{})
	groups := linker.NewPolicyGroups(hs, linker.Timing{})
	cookies, err := session.NewCookies(cfg.Session, strings.HasPrefix(cfg.Gateway.PublicURL, "https://"))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw, err := gateway.New(cfg.Gateway, cookies, store, links, groups, gateway.DefaultTiming(), log, reg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No WriteTimeout: it would cut Server-Sent Events streams such as Headplane's.
	}

	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStore()
	storeDone := make(chan error, 1)
	go func() { storeDone <- store.Run(storeCtx) }()
	// Headscale's policy groups are read in the background; a failure keeps the groups last
	// read, and is logged once per change of state, not on every try.
	groupsDone := make(chan struct{})
	go func() {
		defer close(groupsDone)
		var last string
		groups.Run(storeCtx, func(err error) {
			switch {
			case err == nil && last != "":
				log.Info("headscale policy groups read again")
				last = ""
			case err != nil && err.Error() != last:
				log.Warn("headscale policy groups not read; the last ones read stay in force", "err", err)
				last = err.Error()
			}
		})
	}()

	serveErr := make(chan error, 3)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("headgate listening", "addr", ln.Addr().String(), "public_url", cfg.Gateway.PublicURL, "upstream", cfg.Gateway.Upstream)

	// The tailnet listener: a node of headgate's own, whose requests are signed in by their
	// device. It joins in the background: until it has, the public listener serves alone.
	var tailnetSrv *http.Server
	if cfg.Gateway.Tailnet.Enabled() {
		node, err := gateway.JoinTailnet(ctx, cfg.Gateway.Tailnet, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer node.Close()
		tailnetSrv = &http.Server{
			Handler:           gw.TailnetHandler(node.WhoIs),
			ReadHeaderTimeout: srv.ReadHeaderTimeout,
			IdleTimeout:       srv.IdleTimeout,
			MaxHeaderBytes:    srv.MaxHeaderBytes,
			ErrorLog:          srv.ErrorLog,
		}
		go func() { serveErr <- tailnetSrv.Serve(node.Listener()) }()
	}

	var metricsSrv *http.Server
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("listen metrics: %w", err)
		}
		go func() { serveErr <- metricsSrv.Serve(mln) }()
	}

	select {
	case err := <-serveErr:
		srv.Close()
		stopStore()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Streams never end by themselves: end them now, cleanly, so that Shutdown waits only for
	// ordinary requests, which get the whole timeout.
	gw.Drain()
	if tailnetSrv != nil {
		// Both listeners drain at once, within the one timeout.
		tailnetDone := make(chan struct{})
		go func() {
			defer close(tailnetDone)
			if tailnetSrv.Shutdown(shutdownCtx) != nil {
				tailnetSrv.Close()
			}
		}()
		defer func() { <-tailnetDone }()
	}
	err = srv.Shutdown(shutdownCtx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("shutdown: %w", err)
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	stopStore()
	<-groupsDone
	if serr := <-storeDone; serr != nil {
		err = errors.Join(err, fmt.Errorf("session store: %w", serr))
	}
	log.Info("stopped")
	return err
}

// newLogger builds the one logger every part of headgate writes to.
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRedisClient connects lazily: headgate starts while Redis is down and serves proven
// sessions; /ready reports the store until it answers.
func newRedisClient(c RedisConfig) (redis.UniversalClient, error) {
	o, err := c.options()
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if c.password != "" {
		o.Password = c.password
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = c.Timeout, c.Timeout, c.Timeout
	// One try per command and per dial: go-redis's defaults retry for seconds, which would make
	// redis.timeout a lie and a sign-in wait far past it while Redis is down.
	o.MaxRetries, o.DialerRetries = -1, 1
	o.ClientName = "headgate"
	return redis.NewUniversalClient(o), nil
}

// check reaches what cfg names, the identity provider, Headscale, Redis and the tailnet's
// control server, all at once and each call bounded by its section's timeout (Headscale's for
// the control server), then prints one line per finding in that order. It
// returns an error when anything failed.
func check(ctx context.Context, cfg *Config, w io.Writer) error {
	var idp, hs, store, tailnet []gateway.Finding
	var wg sync.WaitGroup
	wg.Go(func() { idp = gateway.CheckProvider(ctx, cfg.Gateway) })
	wg.Go(func() { hs = checkHeadscale(ctx, cfg.Headscale) })
	wg.Go(func() { store = checkRedis(ctx, cfg.Redis) })
	wg.Go(func() { tailnet = gateway.CheckTailnet(ctx, cfg.Gateway.Tailnet, cfg.Headscale.Timeout) })
	wg.Wait()
	failed := 0
	for _, f := range slices.Concat(idp, hs, store, tailnet) {
		fmt.Fprintf(w, "%-4s  %s: %s\n", f.Status, f.Key, f.Detail)
		if f.Status == gateway.CheckFail {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("check: %d failed", failed)
	}
	return nil
}

// finding is one line of -check.
func finding(status, key, detail string) gateway.Finding {
	return gateway.Finding{Status: status, Key: key, Detail: detail}
}

// checkHeadscale reads Headscale's version and looks a user up with the API key.
func checkHeadscale(ctx context.Context, c linker.HeadscaleConfig) []gateway.Finding {
	hs := linker.NewHeadscale(c, nil)
	var found []gateway.Finding
	if v, err := hs.Version(ctx); err != nil {
		found = append(found, finding(gateway.CheckWarn, "headscale.url", fmt.Sprintf("version not read: %v", err)))
	} else {
		found = append(found, finding(gateway.CheckOK, "headscale.url", fmt.Sprintf("Headscale %s at %s", v, c.URL)))
	}
	_, err := hs.FindUsers(ctx, "name", "headgate-check")
	switch {
	case errors.Is(err, linker.ErrAPIKeyRefused):
		return append(found, finding(gateway.CheckFail, "headscale.api_key", err.Error()))
	case err != nil:
		return append(found, finding(gateway.CheckFail, "headscale.url", err.Error()))
	}
	return append(found, finding(gateway.CheckOK, "headscale.api_key", "accepted (a user lookup answered)"))
}

// checkRedis sends one PING with the configured options.
func checkRedis(ctx context.Context, c RedisConfig) []gateway.Finding {
	if c.URL == "" {
		return []gateway.Finding{finding(gateway.CheckSkip, "redis.url", "not set: sessions and links are kept in process (one instance only)")}
	}
	o, err := c.options()
	if err != nil {
		return []gateway.Finding{finding(gateway.CheckFail, "redis.url", err.Error())}
	}
	where := fmt.Sprintf("%s at %s", c.Mode, strings.Join(o.Addrs, ", "))
	// go-redis reports a failed dial through its process-wide logger too: the FAIL line says it.
	redis.SetLogger(redisLogger{slog.New(slog.DiscardHandler)})
	client, err := newRedisClient(c)
	if err != nil {
		return []gateway.Finding{finding(gateway.CheckFail, "redis.url", err.Error())}
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return []gateway.Finding{finding(gateway.CheckFail, "redis.url", fmt.Sprintf("PING %s: %v", where, err))}
	}
	return []gateway.Finding{finding(gateway.CheckOK, "redis.url", "PING answered: "+where)}
}
