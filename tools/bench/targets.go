package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"headgate/gateway"
	"headgate/internal/testbed"
)

// oauth2ProxyPackage is built through the tools module in tools/peers, which pins v7.15.6.
const oauth2ProxyPackage = "github.com/oauth2-proxy/oauth2-proxy/v7"

// upstreamBody is what the upstream answers every request with: about the size of a small
// API response, so that the benchmark measures the proxies rather than the network.
var upstreamBody = "<!doctype html><title>upstream</title><p>" + strings.Repeat("0123456789", 15) + "</p>\n"

// upstream is the app behind every target. It counts the requests it serves, so that a
// gateway answering without proxying (a redirect to sign in, say) is caught as an error even
// where wrk counts it as a success.
type upstream struct {
	url  string
	hits atomic.Int64
	srv  *http.Server
}

// identityHeaders are the headers headgate sets for a signed-in person, in the order the
// tuned floor sets them.
var identityHeaders = []string{"X-Headscale-User", "X-Headscale-User-Id", "X-Forwarded-User",
	"X-Forwarded-Email", "X-Forwarded-Preferred-Username"}

// identityPath is where an upstream answers with the identity headers it received (see
// writeIdentity, and identityThrough, which asks for them through a proxy).
const identityPath = "/identity"

// writeIdentity answers with the identity headers r carried, as JSON [[name, value], ...].
func writeIdentity(w http.ResponseWriter, r *http.Request) {
	seen := [][2]string{}
	for _, name := range identityHeaders {
		if v := r.Header.Get(name); v != "" {
			seen = append(seen, [2]string{name, v})
		}
	}
	json.NewEncoder(w).Encode(seen)
}

// writeUpstreamPage answers with upstreamBody.
func writeUpstreamPage(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(upstreamBody))
}

// startUpstream serves upstreamBody at every path but identityPath.
func startUpstream() (*upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start upstream: %w", err)
	}
	u := &upstream{url: "http://" + l.Addr().String()}
	u.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if r.URL.Path == identityPath {
			writeIdentity(w, r)
			return
		}
		writeUpstreamPage(w)
	})}
	go u.srv.Serve(l)
	return u, nil
}

// serveBare runs a bare proxy until ctx ends: httputil.ReverseProxy with Rewrite and an idle
// pool as large as headgate's, so that every connection of the load keeps its upstream
// connection. The kind says how far it is tuned: plain makes a 32 KiB copy buffer per
// response, as httputil.ReverseProxy does by itself; pooled takes its copy buffers from a
// pool; tuned pools them as headgate does and does the proxy part of headgate's work with
// fixed values: it drops the Cookie header and sets headers, the identity headers headgate
// sets for the benchmark's person; timed is tuned with headgate's default upstream_timeout
// as its transport's ResponseHeaderTimeout. It runs in a process of its own so that its CPU
// time and RSS are measured the way the gateways' are.
func serveBare(ctx context.Context, addr, upstreamURL, kind string, headers [][2]string) error {
	target, err := url.Parse(upstreamURL)
	if err != nil || target.Host == "" {
		return fmt.Errorf("-upstream: %q is not a URL", upstreamURL)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 1024
	transport.MaxIdleConnsPerHost = 1024
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: transport,
	}
	switch kind {
	case "plain":
	case "pooled":
		proxy.BufferPool = &plainBufferPool{}
	case "tuned", "timed":
		if kind == "timed" {
			var defaults gateway.Config
			defaults.SetDefaults()
			transport.ResponseHeaderTimeout = defaults.UpstreamTimeout
		}
		proxy.BufferPool = &arrayBufferPool{}
		proxy.Rewrite = func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Del("Cookie")
			for _, h := range headers {
				pr.Out.Header.Set(h[0], h[1])
			}
		}
	default:
		return fmt.Errorf("-bare: %q is not plain, pooled, tuned or timed", kind)
	}
	return serveUntilDone(ctx, addr, proxy, "serve bare proxy")
}

// serveUntilDone serves h on addr until ctx ends; what names the server in an error.
func serveUntilDone(ctx context.Context, addr string, h http.Handler, what string) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// arrayBufferPool pools 16 KiB copy buffers as array pointers, so that lending and returning
// one allocates nothing: the pool headgate's proxy has.
type arrayBufferPool struct{ pool sync.Pool }

func (p *arrayBufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[16 << 10]byte); ok {
		return b[:]
	}
	return new([16 << 10]byte)[:]
}

func (p *arrayBufferPool) Put(b []byte) {
	if len(b) == 16<<10 && cap(b) == 16<<10 {
		p.pool.Put((*[16 << 10]byte)(b))
	}
}

// plainBufferPool is the simplest buffer pool a Go proxy can have: a sync.Pool of 32 KiB
// slices (each Put boxes a slice header, 24 bytes).
type plainBufferPool struct{ pool sync.Pool }

func (p *plainBufferPool) Get() []byte {
	if b, ok := p.pool.Get().([]byte); ok {
		return b
	}
	return make([]byte, 32<<10)
}

func (p *plainBufferPool) Put(b []byte) { p.pool.Put(b) }

// floorName names the tuned floor, the target headgate's ratios are also taken to, and
// timedFloorName the timed floor (see serveBare), the third.
const (
	floorName      = "tuned floor"
	timedFloorName = "timed floor"
)

// target is one server under load.
type target struct {
	name string
	url  string
	// cookie is the Cookie header of a signed-in session; empty for the bare proxy.
	cookie string
	// pid is the process whose CPU time and RSS are the target's.
	pid int
	// redis reports whether the target keeps its sessions in the stack's Redis.
	redis bool
	// bare reports whether the target is a bare proxy, which lets any request through.
	bare bool
	// signIn is the URL a browser opens to sign in through the target; empty for a bare proxy.
	signIn string
	// rerun, when not nil, is how a second instance of the target with the same session
	// starts on addr: its binary and arguments. readyPath answers 200 once it serves.
	rerun     func(addr string) (bin string, args []string, err error)
	readyPath string
}

// environment is everything the benchmark runs: the stack (Dex, Headscale, Redis and the
// headgate instances), the upstream, and the processes the stack does not know.
type environment struct {
	// dir holds the configurations and logs of every process; keep leaves it on disk.
	dir      string
	keep     bool
	stack    *testbed.Stack
	upstream *upstream
	children []*testbed.Process
	targets  []*target
	// redisAddr is the stack's Redis, host:port; redisPID its process.
	redisAddr string
	redisPID  int
}

func (env *environment) close() {
	for _, c := range env.children {
		c.Stop()
	}
	if env.stack != nil {
		env.stack.Close()
	}
	if env.upstream != nil {
		env.upstream.srv.Close()
	}
	if env.dir != "" {
		if env.keep {
			fmt.Fprintf(os.Stderr, "bench: configurations and logs kept in %s\n", env.dir)
		} else {
			os.RemoveAll(env.dir)
		}
	}
}

// startEnvironment starts every target and signs in at each gateway.
func startEnvironment(ctx context.Context, st settings, logf func(string, ...any)) (_ *environment, err error) {
	env := &environment{}
	defer func() {
		if err != nil {
			env.keep = true // for a look at the logs
			env.close()
		}
	}()
	root, err := testbed.RepoRoot()
	if err != nil {
		return nil, err
	}
	o2p, err := testbed.PeerBinary(ctx, root, "oauth2-proxy", oauth2ProxyPackage, logf)
	if err != nil {
		return nil, err
	}
	if env.upstream, err = startUpstream(); err != nil {
		return nil, err
	}
	// A directory of the benchmark's own, which it removes itself unless -keep.
	if env.dir, err = os.MkdirTemp("", "headgate-bench-"); err != nil {
		return nil, fmt.Errorf("create the benchmark's directory: %w", err)
	}
	env.keep = st.keep
	logf("starting Dex, Headscale and Redis (the first run builds Dex and Headscale, which takes a few minutes)")
	env.stack, err = testbed.Start(ctx, testbed.Options{Redis: true, MaxGateways: 3, Dir: env.dir, Logf: logf})
	if err != nil {
		return nil, err
	}
	redisURL, err := url.Parse(env.stack.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parse the stack's redis url: %w", err)
	}
	env.redisAddr = redisURL.Host
	if env.redisPID, err = listenerPID(env.redisAddr); err != nil {
		return nil, fmt.Errorf("find redis: %w", err)
	}

	// Two bare proxies, then the two oauth2-proxy instances and the tuned and timed floors.
	ports, err := testbed.FreePorts(6)
	if err != nil {
		return nil, err
	}
	o2pRedisURL := fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	o2pCookieURL := fmt.Sprintf("http://127.0.0.1:%d", ports[4])
	client := testbed.DexClient{ID: "oauth2-proxy", Secret: rand.Text(),
		RedirectURIs: []string{o2pRedisURL + "/oauth2/callback", o2pCookieURL + "/oauth2/callback"}}
	if err := env.stack.AddDexClient(ctx, client); err != nil {
		return nil, err
	}
	if _, err := env.stack.CreateCLIUser(ctx, testbed.Bob.Username, testbed.Bob.Email); err != nil {
		return nil, err
	}

	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to run the bare proxy: %w", err)
	}
	startBare := func(name, kind, port string, extra ...string) (*target, error) {
		// rerun is also how this first instance starts.
		rerun := func(addr string) (string, []string, error) {
			return self, append([]string{"-serve-bare", addr, "-upstream", env.upstream.url, "-bare", kind}, extra...), nil
		}
		addr := "127.0.0.1:" + port
		logName := strings.ReplaceAll(name, " ", "-") + ".log"
		_, args, _ := rerun(addr)
		c, err := testbed.StartProcess(ctx, name, filepath.Join(env.stack.Dir, logName), "http://"+addr+"/", self, args...)
		if err != nil {
			return nil, err
		}
		env.children = append(env.children, c)
		t := &target{name: name, url: "http://" + addr, pid: c.PID(), readyPath: "/", rerun: rerun}
		env.targets = append(env.targets, t)
		return t, nil
	}
	if _, err := startBare("bare proxy", "plain", fmt.Sprint(ports[0])); err != nil {
		return nil, err
	}
	if _, err := startBare("pooled bare proxy", "pooled", fmt.Sprint(ports[1])); err != nil {
		return nil, err
	}

	// Both instances log at warn, so that no per-request log line weighs on the numbers.
	extra := map[string]any{"upstream": env.upstream.url, "log": map[string]any{"level": "warn"}}
	for _, g := range []struct {
		name  string
		opts  testbed.GatewayOptions
		redis bool
	}{
		{"headgate memory", testbed.GatewayOptions{InProcessStore: true, Extra: extra}, false},
		{"headgate redis", testbed.GatewayOptions{RedisKeyPrefix: "bench-headgate:", Extra: extra}, true},
		// Authorization on the path: access rules, a further identity header and a signed
		// assertion (its key generated in the store), against "headgate memory".
		{"headgate authz", testbed.GatewayOptions{InProcessStore: true, Extra: authzExtra(extra)}, false},
	} {
		gw, err := env.stack.StartGateway(ctx, g.opts)
		if err != nil {
			return nil, err
		}
		pid, err := listenerPID(strings.TrimPrefix(gw.URL, "http://"))
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", g.name, err)
		}
		jar := newJar()
		page, err := gw.Login(ctx, jar, testbed.Bob.Email, testbed.Bob.Password, "/")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", g.name, err)
		}
		if page.Status != http.StatusOK || page.Body != upstreamBody {
			return nil, fmt.Errorf("%s: sign-in ended with %d, not the upstream's page: %s", g.name, page.Status, strings.Join(page.Hops, " -> "))
		}
		t := &target{name: g.name, url: gw.URL, cookie: cookieHeader(jar, gw.URL), pid: pid, redis: g.redis, signIn: gw.URL + "/"}
		if g.redis {
			// Its session is in Redis, so a second instance takes the same cookie.
			t.rerun, t.readyPath = rerunHeadgate(pid, gw.ConfigPath, env.stack.Dir), "/ping"
		}
		env.targets = append(env.targets, t)
	}

	// The tuned floor sets the identity headers "headgate memory" sets, and receives and drops
	// the same cookie.
	memory := env.targets[2]
	identity, err := identityThrough(ctx, memory.url, memory.cookie)
	if err != nil {
		return nil, err
	}
	headers, _ := json.Marshal(identity)
	floor, err := startBare(floorName, "tuned", fmt.Sprint(ports[2]), "-bare-headers", string(headers))
	if err != nil {
		return nil, err
	}
	timed, err := startBare(timedFloorName, "timed", fmt.Sprint(ports[5]), "-bare-headers", string(headers))
	if err != nil {
		return nil, err
	}
	for _, f := range []*target{floor, timed} {
		f.cookie, f.bare = memory.cookie, true
		if got, err := identityThrough(ctx, f.url, f.cookie); err != nil {
			return nil, err
		} else if !slices.Equal(got, identity) {
			return nil, fmt.Errorf("the %s sends %q, headgate %q", f.name, got, identity)
		}
	}

	for _, o := range []struct {
		name, url string
		store     []string
		redis     bool
	}{
		{"oauth2-proxy redis", o2pRedisURL, []string{"--session-store-type=redis",
			// A database of its own, apart from headgate's keys.
			fmt.Sprintf("--redis-connection-url=redis://%s/1", env.redisAddr)}, true},
		{"oauth2-proxy cookie", o2pCookieURL, []string{"--session-store-type=cookie"}, false},
	} {
		args := append(oauth2ProxyArgs(env.stack.Issuer, client, o.url, env.upstream.url), o.store...)
		logName := strings.ReplaceAll(o.name, " ", "-") + ".log"
		c, err := testbed.StartProcess(ctx, o.name, filepath.Join(env.stack.Dir, logName), o.url+"/ping", o2p, args...)
		if err != nil {
			return nil, err
		}
		env.children = append(env.children, c)
		jar := newJar()
		signIn := o.url + "/oauth2/start?rd=%2F"
		page, err := testbed.BrowserLogin(ctx, jar, signIn, testbed.Bob.Email, testbed.Bob.Password)
		if err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", o.name, err, c.Tail(20))
		}
		if page.Status != http.StatusOK || page.Body != upstreamBody {
			return nil, fmt.Errorf("%s: sign-in ended with %d, not the upstream's page: %s\n%s", o.name, page.Status, strings.Join(page.Hops, " -> "), c.Tail(20))
		}
		env.targets = append(env.targets, &target{name: o.name, url: o.url, cookie: cookieHeader(jar, o.url), pid: c.PID(), redis: o.redis,
			signIn: signIn})
	}

	for _, t := range env.targets {
		if err := checkTarget(ctx, t); err != nil {
			return nil, err
		}
	}
	logf("every target answers with the upstream's page: %s", targetNames(env.targets))
	return env, nil
}

// holdTargets prints every target's URL, process ID and session cookie, and waits until ctx
// ends, with every target running: for measuring one by hand.
func holdTargets(ctx context.Context, w io.Writer, env *environment, logf func(string, ...any)) error {
	rows := [][]string{{"target", "url", "pid", "cookie"}}
	for _, t := range env.targets {
		rows = append(rows, []string{t.name, t.url, fmt.Sprint(t.pid), t.cookie})
	}
	printTable(w, rows)
	logf("every target runs until interrupted")
	<-ctx.Done()
	return nil
}

// oauth2ProxyArgs configure oauth2-proxy as the issue prescribes, against the same Dex and
// upstream as headgate. Its per-request log line is off, as headgate's is at warn.
// authzExtra is extra plus access rules that let the benchmark's person in, an X-WEBAUTH-USER
// header and a signed identity assertion.
func authzExtra(extra map[string]any) map[string]any {
	out := maps.Clone(extra)
	out["access"] = map[string]any{"emails": []string{testbed.Bob.Email}, "email_domains": []string{"example.org"}}
	out["headers"] = map[string]any{"X-WEBAUTH-USER": "headscale_user"}
	out["assertion"] = map[string]any{"header": "X-Headgate-Assertion"}
	return out
}

func oauth2ProxyArgs(issuer string, client testbed.DexClient, publicURL, upstreamURL string) []string {
	return []string{
		"--provider=oidc",
		"--oidc-issuer-url=" + issuer,
		"--client-id=" + client.ID,
		"--client-secret=" + client.Secret,
		"--cookie-secret=" + cookieSecret(),
		"--cookie-secure=false",
		"--email-domain=*",
		"--upstream=" + upstreamURL,
		"--http-address=" + strings.TrimPrefix(publicURL, "http://"),
		"--redirect-url=" + publicURL + "/oauth2/callback",
		"--skip-provider-button",
		"--reverse-proxy=false",
		"--code-challenge-method=S256",
		// oauth2-proxy asks for consent by default, which makes Dex show its approval screen.
		"--approval-prompt=auto",
		"--request-logging=false",
	}
}

// checkTarget makes sure the target's session lets a request through to the upstream, and
// that a gateway refuses the same request without it.
func checkTarget(ctx context.Context, t *target) error {
	header := http.Header{}
	if t.cookie != "" {
		header.Set("Cookie", t.cookie)
	}
	page, err := testbed.Fetch(ctx, nil, http.MethodGet, t.url+"/", header)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	if page.Status != http.StatusOK || page.Body != upstreamBody {
		return fmt.Errorf("%s: a signed-in request got %d, not the upstream's page", t.name, page.Status)
	}
	if t.cookie == "" || t.bare {
		return nil
	}
	page, err = testbed.Fetch(ctx, nil, http.MethodGet, t.url+"/", nil)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	if page.Body == upstreamBody {
		return fmt.Errorf("%s: a request without a session reached the upstream", t.name)
	}
	return nil
}

// cookieSecret is a new random oauth2-proxy cookie secret: 32 bytes, base64url-encoded.
func cookieSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

func targetNames(ts []*target) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name
	}
	return strings.Join(names, ", ")
}

func newJar() http.CookieJar {
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	return jar
}

// cookieHeader is the Cookie header a browser with jar sends to rawURL.
func cookieHeader(jar http.CookieJar, rawURL string) string {
	u, _ := url.Parse(rawURL)
	var parts []string
	for _, c := range jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}
