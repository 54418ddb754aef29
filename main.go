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
	"os"
	"os/signal"
	"strings"
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

// run loads the configuration, builds every dependency once, serves until ctx ends and then
// shuts down gracefully.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "gateway.yaml", "path of the configuration file")
	checkOnly := flags.Bool("check", false, "validate the configuration and exit")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, lookupEnv)
	if err != nil {
		return err
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "configuration OK")
		return nil
	}
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

	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("headgate listening", "addr", ln.Addr().String(), "public_url", cfg.Gateway.PublicURL, "upstream", cfg.Gateway.Upstream)

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
