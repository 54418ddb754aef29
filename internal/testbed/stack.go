// Package testbed runs headgate against its real peers for the end-to-end tests in e2e/, the
// demo and the benchmark: Dex as the identity provider and Headscale (both built from the Go
// module proxy through the tools module in tools/peers), a real Redis, an upstream that
// records the headers it receives, and on request the real Headplane, nginx or Caddy in front,
// and a headless Chromium. Every program listens on 127.0.0.1 and runs in a process group of
// its own, logging to a file. It is harness code, not a test: it asserts nothing, and reports
// failures as errors naming what failed, with the tail of its log.
package testbed

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// Options shape a Stack.
type Options struct {
	// Redis starts a private redis-server on a free port, and headgate instances use it.
	// false: instances keep sessions and links in process.
	Redis bool
	// RedisPersistence keeps Redis's data on disk (an append-only file written through on
	// every command), so that StopRedis and StartRedis bring the same sessions back. false:
	// Redis keeps nothing, and StartRedis starts it empty.
	RedisPersistence bool
	// Gateway, when set, starts a first headgate instance (Stack.Gateway) with these options.
	// nil: the peers only; StartGateway adds instances later.
	Gateway *GatewayOptions
	// MaxGateways is how many headgate instances the stack can run: their ports are reserved
	// at start because Dex must know every redirect URI. Default 4.
	MaxGateways int
	// Dir receives configurations, databases and logs. Empty: a new temporary directory,
	// removed by Close unless Keep is set.
	Dir string
	// Logf receives progress messages, such as a peer being built. nil: silent.
	Logf func(format string, args ...any)
	// ShippedPorts runs the peers on the ports the shipped gateway.yaml names: Dex on 5556,
	// Headscale on 8080, the upstream on 3000 and the first headgate instance on 4180. The
	// demo uses them; tests use free ports so that runs never collide.
	ShippedPorts bool
	// HeadscaleVersion is the Headscale release the stack runs, such as "0.27.1" (see
	// HeadscaleVersions); its binary is built on first use. Empty: DefaultHeadscaleVersion.
	HeadscaleVersion string
	// Tailnet builds headgate with its tailnet listener (go build -tags tailnet). false: the
	// default build.
	Tailnet bool
	// DERP starts a DERP relay in this process on a loopback port (Stack.DERP) and makes it
	// the only region of Headscale's DERP map, for tailnet nodes (StartTailnetNode). false:
	// Headscale's map has one unreachable dummy region, and nodes could not reach each other.
	DERP bool
}

// The ports of the shipped gateway.yaml.
const (
	shippedDexPort       = 5556
	shippedHeadscalePort = 8080
	shippedUpstreamPort  = 3000
	shippedGatewayPort   = 4180
)

// Stack is a running set of peers and headgate instances. Its exported fields are set by
// Start and must not be changed.
type Stack struct {
	// Dir holds every configuration, database and log of the stack.
	Dir string
	// Issuer is Dex's issuer URL, http://127.0.0.1:PORT/dex.
	Issuer string
	// HeadscaleURL is Headscale's base URL.
	HeadscaleURL string
	// HeadscaleVersion is the Headscale release the stack runs, such as "0.29.3".
	HeadscaleVersion string
	// APIKey is the Headscale API key headgate uses.
	APIKey string
	// RedisURL is the stack's Redis, redis://127.0.0.1:PORT/0, or empty without Redis.
	RedisURL string
	// Upstream is the app behind every headgate instance.
	Upstream *Upstream
	// GatewayClientSecret is the secret of headgate's client (GatewayClientID) at Dex.
	GatewayClientSecret string
	// SessionSecret is session.secret of every headgate instance the stack writes a
	// configuration for.
	SessionSecret string
	// Gateway is the instance started by Start when Options.Gateway was set.
	Gateway *Gateway
	// DERP is the stack's DERP relay when Options.DERP was set; nil otherwise.
	DERP *DERPServer
	// Keep, when set before Close, leaves Dir on disk for a look at the logs.
	Keep bool

	logf         func(string, ...any)
	root         string
	bin          binaries
	tempDir      bool
	redisPersist bool
	binDir       string // holds the stack's headgate binary; removed by Close
	headscaleRel headscaleRelease

	dexPort, headscalePort, headscaleMetricsPort, headscaleGRPCPort, redisPort int
	gatewayPorts                                                               []int

	headscaleClientSecret            string
	headscaleConfig, headscaleSocket string
	policies                         atomic.Int64 // the policies SetPolicy wrote, for their file names

	headgateBuilt chan struct{} // closed when the headgate build has finished
	headgateErr   error         // the build's error; read after headgateBuilt is closed
	cancelBuild   context.CancelFunc

	headplaneSetup headplaneSetup // Node and the Headplane build, found on first use

	mu         sync.Mutex // guards gateways, headplanes, upstreams, nodes, nodeLogs, dex, headscale, redis and inserted
	dex        *process
	headscale  *process
	redis      *process
	gateways   []*Gateway
	headplanes []*Headplane
	upstreams  []*Upstream // those StartUpstream started
	nodes      []*TailnetNode
	nodeLogs   []*os.File // the tailnet nodes' log files

	// inserted lists the OIDC users CreateOIDCUser had to insert into Headscale's database
	// because Headscale's own login did not create them.
	inserted []string
}

// Start builds what is missing, then starts the upstream, Redis (when asked), Dex and
// Headscale, and the first headgate instance (when asked). The headgate binary is rebuilt
// from the checkout every time, for this stack alone, in the background while the peers
// start. On failure every
// process already started is stopped, Dir is kept, and the error names what failed, with
// the tail of its log.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s := &Stack{logf: opts.Logf, Dir: opts.Dir, headgateBuilt: make(chan struct{})}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if err := s.start(ctx, opts); err != nil {
		if s.Dir != "" {
			// The tail in err is often not the whole story.
			s.Keep = true
			err = fmt.Errorf("%w\n(configurations and logs kept in %s)", err, s.Dir)
		}
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, opts Options) error {
	root, err := RepoRoot()
	if err != nil {
		close(s.headgateBuilt)
		return err
	}
	s.root = root
	if s.headscaleRel, err = findHeadscaleRelease(opts.HeadscaleVersion); err != nil {
		close(s.headgateBuilt)
		return err
	}
	s.HeadscaleVersion = s.headscaleRel.version
	s.bin, err = peerBinaries(ctx, root, s.headscaleRel, s.logf)
	if err != nil {
		close(s.headgateBuilt)
		return err
	}
	// The headgate binary is the stack's own: checkouts that share BinDir (worktrees of one
	// repository) may build different code at the same time, and a binary renamed over
	// another's would run in the wrong suite.
	if s.binDir, err = os.MkdirTemp("", "headgate-bin-"); err != nil {
		close(s.headgateBuilt)
		return fmt.Errorf("create the headgate build directory: %w", err)
	}
	s.bin.headgate = filepath.Join(s.binDir, "headgate")
	buildCtx, cancel := context.WithCancel(context.Background())
	s.cancelBuild = cancel
	go func() {
		defer close(s.headgateBuilt)
		var flags []string
		if opts.Tailnet {
			flags = []string{"-tags", "tailnet"}
		}
		s.headgateErr = buildHeadgate(buildCtx, root, s.bin.headgate, flags...)
	}()

	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "headgate-e2e-"); err != nil {
			return fmt.Errorf("create stack directory: %w", err)
		}
		s.tempDir = true
	} else if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("create stack directory: %w", err)
	}
	// A unix socket path is limited to about 100 bytes; a deep Dir gets a short one elsewhere.
	s.headscaleSocket = filepath.Join(s.Dir, "headscale.sock")
	if len(s.headscaleSocket) > 100 {
		short, err := os.MkdirTemp("", "hs-")
		if err != nil {
			return err
		}
		s.headscaleSocket = filepath.Join(short, "headscale.sock")
	}

	maxGateways := opts.MaxGateways
	if maxGateways <= 0 {
		maxGateways = 4
	}
	ports, err := FreePorts(5 + maxGateways)
	if err != nil {
		return err
	}
	s.dexPort, s.headscalePort, s.headscaleMetricsPort, s.headscaleGRPCPort, s.redisPort = ports[0], ports[1], ports[2], ports[3], ports[4]
	s.gatewayPorts = ports[5:]
	upstreamAddr := "127.0.0.1:0"
	if opts.ShippedPorts {
		s.dexPort, s.headscalePort, s.gatewayPorts[0] = shippedDexPort, shippedHeadscalePort, shippedGatewayPort
		upstreamAddr = HostPort(shippedUpstreamPort)
	}
	s.Issuer = "http://" + HostPort(s.dexPort) + "/dex"
	s.HeadscaleURL = "http://" + HostPort(s.headscalePort)
	s.GatewayClientSecret = rand.Text()
	s.headscaleClientSecret = rand.Text()
	s.SessionSecret = (rand.Text() + rand.Text())[:48]

	if s.Upstream, err = startUpstream(upstreamAddr); err != nil {
		return err
	}
	s.redisPersist = opts.RedisPersistence
	if opts.Redis {
		s.RedisURL = fmt.Sprintf("redis://%s/0", HostPort(s.redisPort))
		if err := s.startRedis(ctx); err != nil {
			return err
		}
	}
	if err := s.startDex(ctx); err != nil {
		return err
	}
	if opts.DERP {
		if s.DERP, err = StartDERP(nil); err != nil {
			return err
		}
	}
	if err := s.startHeadscale(ctx); err != nil {
		return err
	}
	if opts.Gateway != nil {
		if s.Gateway, err = s.StartGateway(ctx, *opts.Gateway); err != nil {
			return err
		}
	}
	return nil
}

// InsertedUsers returns the emails of the OIDC users CreateOIDCUser had to insert into
// Headscale's database because Headscale's own login did not create them.
func (s *Stack) InsertedUsers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.inserted)
}

// waitHeadgateBuild waits for the background build of headgate.
func (s *Stack) waitHeadgateBuild(ctx context.Context) error {
	select {
	case <-s.headgateBuilt:
		return s.headgateErr
	case <-ctx.Done():
		return fmt.Errorf("wait for the headgate build: %w", ctx.Err())
	}
}

// Close stops every process of the stack and removes its temporary directory (unless Keep is
// set). It is safe to call more than once.
func (s *Stack) Close() {
	if s.cancelBuild != nil {
		s.cancelBuild()
	}
	<-s.headgateBuilt
	s.mu.Lock()
	gateways, headplanes, upstreams, headscale, dex, redis := s.gateways, s.headplanes, s.upstreams, s.headscale, s.dex, s.redis
	nodes, nodeLogs := s.nodes, s.nodeLogs
	s.mu.Unlock()
	for _, n := range nodes {
		n.Close()
	}
	for _, f := range nodeLogs {
		f.Close()
	}
	for _, g := range gateways {
		g.Stop()
	}
	for _, hp := range headplanes {
		hp.Stop()
	}
	headscale.stop()
	s.DERP.Close()
	dex.stop()
	redis.stop()
	if s.Upstream != nil {
		s.Upstream.Close()
	}
	for _, u := range upstreams {
		u.Close()
	}
	if filepath.Dir(s.headscaleSocket) != s.Dir && s.headscaleSocket != "" {
		os.RemoveAll(filepath.Dir(s.headscaleSocket))
	}
	if s.binDir != "" {
		os.RemoveAll(s.binDir)
	}
	if s.tempDir && !s.Keep {
		os.RemoveAll(s.Dir)
	}
}
