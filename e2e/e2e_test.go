// Package e2e tests the headgate binary against its real peers, which internal/testbed
// starts: Dex, Headscale, Redis, Headplane, nginx, Caddy and headless Chromium. It holds
// tests only.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"headgate/internal/testbed"
)

// The suite shares one stack: Dex, Headscale, Redis, the upstream and one headgate instance
// with the shipped configuration. Tests that need another configuration add an instance with
// extraGateway. Every test sends its requests under a path of its own, so the upstream's record
// tells the tests apart and they run in parallel.
var (
	stack    *testbed.Stack
	accounts testbed.Accounts
	// shared is the instance with the default options; sharedErr says why it did not start.
	shared    *testbed.Gateway
	sharedErr error
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if testbed.InLoopbackNamespace() {
		// A test re-run in a network namespace of its own (see inLoopbackNamespace) starts
		// the stack it needs itself; the shared one already ran outside.
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...) }
	began := time.Now()
	s, err := testbed.Start(ctx, testbed.Options{Redis: true, Logf: logf, MaxGateways: 48})
	if err != nil {
		logf("FAIL: the peers did not start: %v", err)
		return 1
	}
	defer s.Close()
	stack = s
	if accounts, err = s.CreateAccounts(ctx); err != nil {
		logf("FAIL: creating the headscale users: %v", err)
		s.Keep = true
		logf("logs kept in %s", s.Dir)
		return 1
	}
	// A headgate that does not build or start fails every test that needs it, with this
	// error, while the peer tests still run.
	shared, sharedErr = s.StartGateway(ctx, testbed.GatewayOptions{})
	logf("stack ready in %s (logs in %s)", time.Since(began).Round(100*time.Millisecond), s.Dir)
	code := m.Run()
	if code != 0 {
		s.Keep = true
		logf("logs kept in %s", s.Dir)
	}
	return code
}

// gateway returns the shared headgate instance, failing the test when it did not start. On
// failure the test's log shows the instance's last log lines.
func gateway(t *testing.T) *testbed.Gateway {
	t.Helper()
	if sharedErr != nil {
		t.Fatalf("headgate did not start: %v", sharedErr)
	}
	showLogOnFailure(t, shared)
	return shared
}

var extra = struct {
	sync.Mutex
	gateways map[string]*testbed.Gateway
	errs     map[string]error
}{gateways: map[string]*testbed.Gateway{}, errs: map[string]error{}}

// extraGateway returns the instance named name, starting it with opts on first use, so that a
// rerun test (-count=2) reuses it instead of taking another reserved port.
func extraGateway(t *testing.T, name string, opts testbed.GatewayOptions) *testbed.Gateway {
	t.Helper()
	gateway(t) // the same binary: when the shared one failed, say why
	extra.Lock()
	defer extra.Unlock()
	g, ok := extra.gateways[name]
	if !ok {
		if err, failed := extra.errs[name]; failed {
			t.Fatalf("headgate instance %s did not start: %v", name, err)
		}
		var err error
		g, err = stack.StartGateway(t.Context(), opts)
		if err != nil {
			extra.errs[name] = err
			t.Fatalf("headgate instance %s did not start: %v", name, err)
		}
		extra.gateways[name] = g
	}
	showLogOnFailure(t, g)
	return g
}

func showLogOnFailure(t *testing.T, g *testbed.Gateway) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", g.LogPath, g.Tail(25))
		}
	})
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// login signs u in at g through startPath and fails the test when the flow breaks.
func login(t *testing.T, g *testbed.Gateway, jar http.CookieJar, u testbed.User, startPath string) *testbed.Page {
	t.Helper()
	page, err := g.Login(t.Context(), jar, u.Email, u.Password, startPath)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// fetch sends one request to g and fails the test on a transport error.
func fetch(t *testing.T, g *testbed.Gateway, jar http.CookieJar, method, path string, header http.Header) *testbed.Page {
	t.Helper()
	page, err := g.Fetch(t.Context(), jar, method, path, header)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

var runs atomic.Int64

// testPrefix returns a path prefix no other test, nor another run of this one (-count), uses.
func testPrefix(t *testing.T) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("/t/%d-%s/", runs.Add(1), name)
}

// upstreamSaw returns the requests under prefix that reached the upstream.
func upstreamSaw(prefix string) []testbed.Request {
	return stack.Upstream.Requests(prefix)
}

// TestPeersStart checks the peers themselves, without headgate: Dex signs people in with the
// claims the suite relies on, Headscale created Alice from her OIDC sign-in with the provider
// ID headgate matches on, and Redis and the upstream answer.
func TestPeersStart(t *testing.T) {
	ctx := t.Context()

	t.Run("dex", func(t *testing.T) {
		provider, err := oidc.NewProvider(ctx, stack.Issuer)
		if err != nil {
			t.Fatalf("dex discovery: %v", err)
		}
		verifier := provider.Verifier(&oidc.Config{ClientID: testbed.GatewayClientID})
		for _, u := range testbed.People() {
			code, redirectURI, err := stack.DexAuthCode(ctx, newJar(t), u)
			if err != nil {
				t.Fatal(err)
			}
			conf := oauth2.Config{ClientID: testbed.GatewayClientID, ClientSecret: stack.GatewayClientSecret,
				Endpoint: provider.Endpoint(), RedirectURL: redirectURI}
			tok, err := conf.Exchange(ctx, code)
			if err != nil {
				t.Fatalf("exchange %s's code: %v", u.Email, err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := verifier.Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify %s's id token: %v", u.Email, err)
			}
			var claims struct {
				Email             string `json:"email"`
				EmailVerified     bool   `json:"email_verified"`
				PreferredUsername string `json:"preferred_username"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if idt.Subject != u.Subject() {
				t.Errorf("%s: sub: got %q, want %q", u.Email, idt.Subject, u.Subject())
			}
			if claims.Email != u.Email || claims.EmailVerified != u.EmailVerified || claims.PreferredUsername != u.Username {
				t.Errorf("%s: claims: got %+v, want email %s, email_verified %v, preferred_username %s",
					u.Email, claims, u.Email, u.EmailVerified, u.Username)
			}
		}
	})

	t.Run("headscale", func(t *testing.T) {
		if len(stack.InsertedUsers()) > 0 {
			t.Errorf("headscale's own oidc login did not create %v (they were inserted into its database)", stack.InsertedUsers())
		}
		users, err := stack.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]testbed.HeadscaleUser{
			"alice": {Name: "alice", DisplayName: testbed.Alice.Name, Email: testbed.Alice.Email, Provider: "oidc",
				ProviderID: stack.Issuer + "/" + testbed.Alice.Subject()},
			"bob":  {Name: "bob", Email: testbed.Bob.Email},
			"dave": {Name: "dave", Email: testbed.Dave.Email},
			"erin": {Name: "erin", Email: testbed.Erin.Email},
		}
		if len(users) != len(want) {
			t.Errorf("got %d users, want %d: %+v", len(users), len(want), users)
		}
		for _, u := range users {
			w, ok := want[u.Name]
			if !ok {
				t.Errorf("unexpected user %+v", u)
				continue
			}
			w.ID = u.ID
			if w.DisplayName == "" {
				w.DisplayName = u.DisplayName
			}
			if u != w {
				t.Errorf("user %s: got %+v, want %+v", u.Name, u, w)
			}
		}
		if accounts.Alice.ID == "" || accounts.Alice.ID == accounts.Bob.ID {
			t.Errorf("accounts: got alice id %q and bob id %q, want two distinct ids", accounts.Alice.ID, accounts.Bob.ID)
		}
	})

	t.Run("redis", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(stack.RedisURL, "redis://"), "/0"), time.Second)
		if err != nil {
			t.Fatalf("dial redis: %v", err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(time.Second))
		conn.Write([]byte("PING\r\n"))
		buf := make([]byte, 16)
		n, _ := conn.Read(buf)
		if got := string(buf[:n]); got != "+PONG\r\n" {
			t.Errorf("PING: got %q, want +PONG", got)
		}
	})

	t.Run("upstream", func(t *testing.T) {
		path := testPrefix(t) + "direct"
		page, err := testbed.Fetch(ctx, nil, http.MethodGet, stack.Upstream.URL+path, http.Header{"X-Probe": {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		if page.Status != http.StatusOK || !strings.Contains(page.Body, "X-Probe") {
			t.Errorf("got %d %q, want 200 and a page listing X-Probe", page.Status, page.Body)
		}
		got := upstreamSaw(path)
		if len(got) != 1 || got[0].Header.Get("X-Probe") != "1" {
			t.Errorf("recorded: got %+v, want one request with X-Probe 1", got)
		}
	})
}
