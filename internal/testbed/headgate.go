package testbed

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// GatewayOptions shape one headgate instance. The zero value is the configuration of the
// shipped gateway.yaml: match [provider_id, email], unlinked deny, ttl 1h, negative_ttl 1m, and
// the stack's Redis when it has one.
type GatewayOptions struct {
	// Match is link.match. Default [provider_id, email].
	Match []string
	// Unlinked is link.unlinked, deny or allow. Default deny.
	Unlinked string
	// TTL is link.ttl. Default 1h.
	TTL time.Duration
	// NegativeTTL is link.negative_ttl. Default 1m.
	NegativeTTL time.Duration
	// InProcessStore runs the instance without Redis even when the stack has one.
	InProcessStore bool
	// RedisKeyPrefix is redis.key_prefix. Empty: headgate's default, so instances that leave
	// it empty share sessions and links. An instance whose link settings differ from its
	// neighbours' needs a prefix of its own, or it would reuse their cached links.
	RedisKeyPrefix string
	// SkipAuth is skip_auth. Default [/admin/healthz].
	SkipAuth []string
	// Extra holds further top-level keys of gateway.yaml, such as sign_out_paths or
	// shutdown_timeout; they override what the stack writes. A map is merged key by key into
	// the section of that name, so {"headscale": {"timeout": "1s"}} keeps the stack's
	// Headscale URL and API key.
	Extra map[string]any
	// ConfigFile, when set, runs the instance with this file (such as the shipped
	// gateway.yaml) instead of a written one, with the stack's values in the environment
	// variables it references: OIDC_CLIENT_SECRET, HEADSCALE_API_KEY, HEADGATE_SESSION_SECRET
	// and HEADGATE_REDIS_URL. The other fields are then ignored; the file must name the
	// stack's ports (Options.ShippedPorts).
	ConfigFile string
}

// Gateway is one running headgate instance of a stack.
type Gateway struct {
	// URL is the instance's public URL, http://127.0.0.1:PORT.
	URL string
	// ConfigPath is the gateway.yaml the instance runs with.
	ConfigPath string
	// LogPath is the file that receives the instance's standard output and error.
	LogPath string

	name string
	dir  string
	bin  string
	env  []string

	mu   sync.Mutex // guards proc
	proc *process
}

// StartGateway starts a headgate instance on the next reserved port, against the stack's Dex,
// Headscale, upstream and (unless opts say otherwise) Redis, and waits for its /ping.
func (s *Stack) StartGateway(ctx context.Context, opts GatewayOptions) (*Gateway, error) {
	if err := s.waitHeadgateBuild(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	n := len(s.gateways)
	if n >= len(s.gatewayPorts) {
		s.mu.Unlock()
		return nil, fmt.Errorf("start headgate: all %d reserved gateway ports are in use (raise Options.MaxGateways)", n)
	}
	port := s.gatewayPorts[n]
	g := &Gateway{
		URL:        "http://" + HostPort(port),
		ConfigPath: filepath.Join(s.Dir, fmt.Sprintf("gateway%d.yaml", n+1)),
		LogPath:    filepath.Join(s.Dir, fmt.Sprintf("headgate%d.log", n+1)),
		name:       fmt.Sprintf("headgate%d", n+1),
		dir:        s.Dir,
		bin:        s.bin.headgate,
	}
	s.gateways = append(s.gateways, g)
	s.mu.Unlock()

	if opts.ConfigFile != "" {
		g.ConfigPath = opts.ConfigFile
		redisURL := s.RedisURL
		if opts.InProcessStore {
			redisURL = ""
		}
		g.env = []string{
			"OIDC_CLIENT_SECRET=" + s.GatewayClientSecret,
			"HEADSCALE_API_KEY=" + s.APIKey,
			"HEADGATE_SESSION_SECRET=" + s.SessionSecret,
			"HEADGATE_REDIS_URL=" + redisURL,
		}
	} else if err := s.writeGatewayConfig(g, port, opts); err != nil {
		return nil, err
	}
	if err := g.run(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// run starts the instance's process and waits for its /ping.
func (g *Gateway) run(ctx context.Context) error {
	p, err := startProcessEnv(g.name, g.dir, g.LogPath, g.env, g.bin, "-config", g.ConfigPath)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.proc = p
	g.mu.Unlock()
	if err := p.waitHTTP(ctx, g.URL+"/ping", 30*time.Second); err != nil {
		return fmt.Errorf("start headgate: %w", err)
	}
	return nil
}

// process returns the instance's current process.
func (g *Gateway) process() *process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proc
}

// writeGatewayConfig writes the instance's gateway.yaml with literal values (the secrets are
// the stack's, random per stack).
func (s *Stack) writeGatewayConfig(g *Gateway, port int, opts GatewayOptions) error {
	match := opts.Match
	if len(match) == 0 {
		match = []string{"provider_id", "email"}
	}
	unlinked := opts.Unlinked
	if unlinked == "" {
		unlinked = "deny"
	}
	ttl, negativeTTL := opts.TTL, opts.NegativeTTL
	if ttl == 0 {
		ttl = time.Hour
	}
	if negativeTTL == 0 {
		negativeTTL = time.Minute
	}
	skip := opts.SkipAuth
	if skip == nil {
		skip = []string{"/admin/healthz"}
	}
	cfg := map[string]any{
		"listen":     HostPort(port),
		"public_url": g.URL,
		"upstream":   s.Upstream.URL,
		"oidc": map[string]any{
			"issuer":        s.Issuer,
			"client_id":     GatewayClientID,
			"client_secret": s.GatewayClientSecret,
			"scopes":        []string{"openid", "email", "profile"},
		},
		"headscale": map[string]any{"url": s.HeadscaleURL, "api_key": s.APIKey},
		"link": map[string]any{
			"match":        match,
			"unlinked":     unlinked,
			"ttl":          ttl.String(),
			"negative_ttl": negativeTTL.String(),
		},
		"session":   map[string]any{"secret": s.SessionSecret, "lifetime": "12h"},
		"skip_auth": skip,
		"log":       map[string]any{"level": "debug"},
	}
	if s.RedisURL != "" && !opts.InProcessStore {
		redis := map[string]any{"url": s.RedisURL}
		if opts.RedisKeyPrefix != "" {
			redis["key_prefix"] = opts.RedisKeyPrefix
		}
		cfg["redis"] = redis
	}
	for key, v := range opts.Extra {
		section, isMap := cfg[key].(map[string]any)
		extra, extraIsMap := v.(map[string]any)
		if isMap && extraIsMap {
			maps.Copy(section, extra)
			continue
		}
		cfg[key] = v
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode gateway config: %w", err)
	}
	return os.WriteFile(g.ConfigPath, data, 0o600)
}

// Login signs in at this instance the way a browser does: it navigates to startPath (a
// protected path, or /oauth2/start?rd=...), follows the redirects to Dex's password form,
// submits email and password, and follows the redirects back through /oauth2/callback. It
// returns the page the flow ends on: the upstream's answer, or headgate's own page (such as
// 403 for a person without a Headscale user). jar keeps the session cookie.
func (g *Gateway) Login(ctx context.Context, jar http.CookieJar, email, password, startPath string) (*Page, error) {
	page, err := BrowserLoginUntil(ctx, jar, g.URL+startPath, email, password, "")
	if err != nil {
		return nil, fmt.Errorf("sign in %s at headgate: %w", email, err)
	}
	return page, nil
}

// Fetch sends one request to path on this instance with jar's cookies (jar may be nil) and
// returns the answer without following redirects.
func (g *Gateway) Fetch(ctx context.Context, jar http.CookieJar, method, path string, header http.Header) (*Page, error) {
	return Fetch(ctx, jar, method, g.URL+path, header)
}

// Tail returns the last n lines of the instance's log.
func (g *Gateway) Tail(n int) string {
	return tailFile(g.LogPath, n)
}

// Stop ends the instance: SIGTERM, then SIGKILL if it has not exited within 5 seconds.
func (g *Gateway) Stop() {
	g.process().stop()
}

// Signal sends sig to the instance's process, such as syscall.SIGTERM to test its graceful
// shutdown; Wait then reports how it ended.
func (g *Gateway) Signal(sig os.Signal) error {
	p := g.process()
	if p == nil || p.exited() {
		return fmt.Errorf("signal %s: it is not running", g.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", g.name, err)
	}
	return nil
}

// Wait waits until the instance's process exits and returns nil for exit status 0, else the
// exit error. It fails when ctx ends first.
func (g *Gateway) Wait(ctx context.Context) error {
	p := g.process()
	if p == nil {
		return fmt.Errorf("wait for %s to exit: it was never started", g.name)
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("wait for %s to exit: %w", g.name, ctx.Err())
	}
}

// Restart stops the instance if it runs and starts it again on the same port with the same
// configuration, as after a deployment. Sessions it kept in process are gone; those in Redis
// are not.
func (g *Gateway) Restart(ctx context.Context) error {
	g.Stop()
	return g.run(ctx)
}

// Check runs `headgate -config FILE -check` with the instance's configuration and environment,
// as an operator does before starting it, and returns what it printed. A check that reports a
// FAIL exits non-zero, which is the error.
func (g *Gateway) Check(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, "-config", g.ConfigPath, "-check")
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("headgate -check: %w", err)
	}
	return string(out), nil
}
