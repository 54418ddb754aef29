package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"headgate/linker"
	"headgate/session"

	"github.com/redis/go-redis/v9"
)

// testEnv is a complete gateway against real parts: a real OIDC provider (testIdP), a Headscale
// API double served over HTTP, a real Redis, and an httptest upstream that records what reached
// it. The gateway and its session store keep time on the test's clock.
type testEnv struct {
	clock     *fakeClock
	idp       *testIdP
	headscale *headscaleDouble
	groups    *linker.PolicyGroups
	upstream  *recorder
	gw        *Gateway
	srv       *httptest.Server
	store     Store
	redis     *redis.Client
	prefix    string
	logs      *syncBuffer
}

type envOptions struct {
	match     []string
	unlinked  string
	ttl       time.Duration
	memory    bool
	skipAuth  []string
	upstream  http.Handler
	upTimeout time.Duration
	// bodyTimeout is body_timeout.
	bodyTimeout time.Duration
	redirects   []string
	hsTimeout   time.Duration
	signOut     []string
	trusted     []string
	// providerSignOut sets oidc.sign_out_at_provider.
	providerSignOut bool
	// headplane sets headplane.path; headplaneNoLink sets headplane.link_at_sign_in false.
	headplane       string
	headplaneNoLink bool
	// jsonLog makes the gateway's log JSON instead of text.
	jsonLog bool
	// edit, when set, changes the gateway's Config last, for what the fields above do not
	// cover (routes, access rules, headers, assertions).
	edit func(*Config)
}

// newTestEnv starts a gateway; opts adjust the configuration.
func newTestEnv(t *testing.T, opts ...func(*envOptions)) *testEnv {
	t.Helper()
	o := envOptions{match: []string{"provider_id", "email"}, unlinked: "deny", ttl: time.Hour,
		skipAuth: []string{"/admin/healthz", "/admin/assets/"}}
	for _, f := range opts {
		f(&o)
	}
	e := &testEnv{clock: newFakeClock(t), idp: newTestIdP(t), logs: &syncBuffer{}}
	e.headscale = newHeadscaleDouble(t)
	e.upstream = newRecorder(t, o.upstream)

	var cache linker.Cache
	if o.memory {
		e.store = session.NewMemoryStore(e.clock.storeTiming())
		cache = linker.NewMemoryCache(linker.Timing{})
	} else {
		e.redis = testRedis(t)
		e.prefix = fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
		rs := session.NewRedisStore(e.redis, e.prefix, e.clock.storeTiming())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rs.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		e.store = rs
		cache = linker.NewRedisCache(e.redis, e.prefix)
		t.Cleanup(func() { cleanPrefix(e.redis, e.prefix) })
	}
	e.srv = httptest.NewUnstartedServer(nil)
	public := "http://" + e.srv.Listener.Addr().String()
	cookies, err := session.NewCookies(defaulted(session.Config{
		Secret: session.Secrets{strings.Repeat("0123456789abcdef", 3)},
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	hsTimeout := o.hsTimeout
	if hsTimeout == 0 {
		hsTimeout = 2 * time.Second
	}
	hs := linker.NewHeadscale(defaulted(linker.HeadscaleConfig{URL: e.headscale.srv.URL, APIKey: e.headscale.key, Timeout: hsTimeout, ListMaxAge: time.Millisecond}), nil)
	links := linker.New(defaulted(linker.Config{Match: o.match, Unlinked: o.unlinked, TTL: o.ttl, NegativeTTL: time.Minute}), hs, cache, linker.Timing{})
	e.groups = linker.NewPolicyGroups(hs, linker.Timing{})
	cfg := Config{
		PublicURL:       public,
		Upstream:        e.upstream.srv.URL,
		SkipAuth:        o.skipAuth,
		RedirectDomains: o.redirects,
		SignOutPaths:    o.signOut,
		TrustedProxies:  o.trusted,
		UpstreamTimeout: o.upTimeout,
		BodyTimeout:     o.bodyTimeout,
		OIDC: OIDCConfig{
			Issuer:            e.idp.URL,
			ClientID:          e.idp.ClientID,
			ClientSecret:      e.idp.ClientSecret,
			Timeout:           2 * time.Second,
			SignOutAtProvider: o.providerSignOut,
		},
		Headplane: HeadplaneConfig{Path: o.headplane},
	}
	if o.headplaneNoLink {
		no := false
		cfg.Headplane.LinkAtSignIn = &no
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.jsonLog {
		log = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e.gw, err = New(defaulted(cfg), cookies, e.store, links, e.groups, e.clock.timing(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.gw
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", e.logs.String())
		}
	})
	return e
}

// signIn signs the current IdP user in with a fresh browser and returns the browser and the
// final response (the upstream's answer for path).
func (e *testEnv) signIn(t *testing.T, path string) (*http.Client, *http.Response) {
	t.Helper()
	b := newBrowser(t)
	resp := e.idp.login(t, b, e.srv.URL+path)
	return b, resp
}

// signedIn signs the current IdP user in at "/" and returns the browser and its session cookie.
func (e *testEnv) signedIn(t *testing.T) (*http.Client, *http.Cookie) {
	t.Helper()
	b, resp := e.signIn(t, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: got %d, want 200", resp.StatusCode)
	}
	readBody(t, resp)
	return b, e.sessionCookie(t, b)
}

// sessionCookie returns the browser's headgate session cookie.
func (e *testEnv) sessionCookie(t *testing.T, b *http.Client) *http.Cookie {
	t.Helper()
	u := mustURL(t, e.srv.URL)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "_headgate" {
			return c
		}
	}
	t.Fatal("browser has no _headgate cookie")
	return nil
}

// get sends a request to the gateway with the given headers, without following redirects.
func (e *testEnv) get(t *testing.T, path string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.do(t, req, header)
}

// do sends req with header added, without following redirects, and returns the response with
// its body read into memory.
func (e *testEnv) do(t *testing.T, req *http.Request, header http.Header) *http.Response {
	t.Helper()
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(b)
}

// headscaleDouble serves Headscale's GET /api/v1/user and /api/v1/policy from a list and a
// policy the test controls.
type headscaleDouble struct {
	srv    *httptest.Server
	key    string
	mu     sync.Mutex
	users  []map[string]string
	policy string
	down   bool
	delay  time.Duration
}

func newHeadscaleDouble(t testing.TB) *headscaleDouble {
	h := &headscaleDouble{key: "hskey-api-test-" + session.NewID()}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		down, delay := h.down, h.delay
		users := append([]map[string]string{}, h.users...)
		policy := h.policy
		h.mu.Unlock()
		if down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path != "/api/v1/user" && r.URL.Path != "/api/v1/policy" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+h.key {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/policy" {
			json.NewEncoder(w).Encode(map[string]any{"policy": policy, "updatedAt": "2026-01-01T00:00:00Z"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"users": users})
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// addUser adds a Headscale user; providerID empty makes a CLI user.
func (h *headscaleDouble) addUser(id, name, email, providerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	provider := ""
	if providerID != "" {
		provider = "oidc"
	}
	h.users = append(h.users, map[string]string{"id": id, "name": name, "email": email,
		"providerId": providerID, "provider": provider, "createdAt": "2026-01-01T00:00:00Z"})
}

func (h *headscaleDouble) set(f func(h *headscaleDouble)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

// recorder is an upstream that records the headers of every request it receives.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newRecorder(t testing.TB, next http.Handler) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The recorded copy keeps the body, which the server closes once the handler returns.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		kept := r.Clone(context.Background())
		kept.Body = io.NopCloser(bytes.NewReader(body))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, kept)
		rec.mu.Unlock()
		if next != nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream %s %s user=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Headscale-User"))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// last returns the last request the upstream received, or nil.
func (rec *recorder) last() *http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		return nil
	}
	return rec.reqs[len(rec.reqs)-1]
}

// requests returns every request the upstream received, oldest first.
func (rec *recorder) requests() []*http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.reqs)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// testRedis connects to the Redis the tests need, failing with instructions when it is absent.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("these tests need Redis on 127.0.0.1:6379 (start one with: redis-server --daemonize yes --port 6379 --save \"\"): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func cleanPrefix(c *redis.Client, prefix string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// defaulted returns c with its defaults applied, as loading gateway.yaml applies them before
// anything is built from it.
func defaulted[C any, P interface {
	*C
	SetDefaults()
}](c C) C {
	P(&c).SetDefaults()
	return c
}
