package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a running headgate, which
// a test can wait on.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // receives after a write, unless the last one is still untaken
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{wrote: make(chan struct{}, 1)} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// waitFor waits, for at most limit, until cond holds for what was written, and reports
// whether it does.
func (b *lockedBuffer) waitFor(limit time.Duration, cond func(written string) bool) bool {
	deadline := time.After(limit)
	for !cond(b.String()) {
		select {
		case <-b.wrote:
		case <-deadline:
			return cond(b.String())
		}
	}
	return true
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestJSONLogStaysJSONWhileRedisIsDown runs headgate against a Redis that does not answer:
// go-redis's own complaints arrive in headgate's log, and every line of a json log is JSON.
func TestJSONLogStaysJSONWhileRedisIsDown(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:0
public_url: http://127.0.0.1:4180
upstream: http://127.0.0.1:3000
oidc: {issuer: http://127.0.0.1:5556/dex, client_id: headgate, client_secret: x}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: `+strings.Repeat("k", 32)+`}
redis: {url: "redis://127.0.0.1:1/0", timeout: 100ms}
log: {format: json}
shutdown_timeout: 1s
`)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := newLockedBuffer(), newLockedBuffer()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"headgate", "-config", path}, env(nil), stdout, stderr) }()
	// /ready asks Redis, which fails: go-redis logs the failed dial.
	var addr string
	stderr.waitFor(10*time.Second, func(log string) bool {
		var line struct{ Addr string }
		for l := range strings.SplitSeq(log, "\n") {
			if strings.Contains(l, `"msg":"headgate listening"`) && json.Unmarshal([]byte(l), &line) == nil {
				addr = line.Addr
			}
		}
		return addr != ""
	})
	if addr == "" {
		cancel()
		t.Fatalf("headgate did not start:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/ready with Redis down: got %d, want 503", resp.StatusCode)
	}
	stderr.waitFor(10*time.Second, func(log string) bool { return strings.Contains(log, `"msg":"redis client"`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	log := stderr.String()
	if !strings.Contains(log, `"msg":"redis client"`) {
		t.Errorf("no go-redis message in headgate's log within 10s:\n%s", log)
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}

func TestHelpAndMistakes(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // "" for success
		// wantOut is in stdout on success, in stderr on a mistake.
		wantOut []string
	}{
		{[]string{"-h"}, "", []string{"Usage:", "-config file", "-check", "-offline", "-version", "headgate healthcheck", "headgate version"}},
		{[]string{"-help"}, "", []string{"Usage:"}},
		{[]string{"healthcheck", "-h"}, "", []string{"headgate healthcheck", "-url URL", "-timeout"}},
		{[]string{"-nope"}, "flag provided but not defined: -nope", []string{"Usage:"}},
		{[]string{"serve"}, `unknown command "serve"`, []string{"Usage:"}},
		{[]string{"healthcheck", "now"}, `healthcheck: unknown command "now"`, []string{"headgate healthcheck"}},
		{[]string{"-offline"}, "-offline goes with -check", nil},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"headgate"}, tt.args...), env(nil), &stdout, &stderr)
		out, other := stdout.String(), stderr.String()
		if tt.wantErr == "" && err != nil {
			t.Errorf("%q: got %v, want success", tt.args, err)
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: got %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			out, other = other, out
		}
		for _, want := range tt.wantOut {
			if !strings.Contains(out, want) {
				t.Errorf("%q: got output\n%s\nwant %q in it", tt.args, out, want)
			}
		}
		if other != "" {
			t.Errorf("%q: got %q on the other stream, want nothing", tt.args, other)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"version"}} {
		var stdout bytes.Buffer
		if err := run(context.Background(), append([]string{"headgate"}, args...), env(nil), &stdout, io.Discard); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if got := stdout.String(); !strings.HasPrefix(got, "headgate ") || strings.Count(got, "\n") != 1 {
			t.Errorf("%q: got %q, want one line starting with \"headgate \"", args, got)
		}
	}
	built := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "headgate", Version: "v0.0.0-20251202015700-d3f8320abcde+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.time", Value: "2025-12-02T01:57:00Z"}, {Key: "vcs.revision", Value: "d3f8320abcde"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		linked string
		info   *debug.BuildInfo
		want   string
	}{
		{"", built, "headgate v0.0.0-20251202015700-d3f8320abcde+dirty (commit d3f8320abcde, 2025-12-02T01:57:00Z, modified, go1.26.8)"},
		{"v1.2.0", built, "headgate v1.2.0 (commit d3f8320abcde, 2025-12-02T01:57:00Z, modified, go1.26.8)"},
		{"", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "false"}}}, "headgate (devel) (go1.26.8)"},
		{"v1.2.0", nil, "headgate v1.2.0"},
		{"", nil, "headgate (unknown version)"},
	}
	for _, tt := range tests {
		if got := versionText(tt.linked, tt.info); got != tt.want {
			t.Errorf("versionText(%q, ...): got %q, want %q", tt.linked, got, tt.want)
		}
	}
}

// TestBuiltBinary builds headgate with a version set at link time and runs it, for the exit
// statuses a shell or a container engine sees.
func TestBuiltBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "headgate")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct {
		args     []string
		wantCode int
		want     string // in the output
	}{
		{[]string{"-version"}, 0, "headgate v9.9.9-test ("},
		{[]string{"-h"}, 0, "Usage:"},
		{[]string{"healthcheck", "-url", "http://127.0.0.1:1/ping"}, 1, "headgate: healthcheck: "},
		{[]string{"-config", "nonexistent.yaml", "-check"}, 1, "headgate: read config: "},
	}
	for _, tt := range tests {
		out, err := exec.Command(bin, tt.args...).CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.wantCode || !strings.Contains(string(out), tt.want) {
			t.Errorf("headgate %q: got exit status %d and\n%s\nwant %d and %q", tt.args, code, out, tt.wantCode, tt.want)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ping" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Has("hang") {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	listenAll := writeConfig(t, strings.Join(append(slices.Clone(validDoc), "listen: 0.0.0.0:"+port), "\n"))

	tests := []struct {
		args    []string
		status  int
		wantErr string // "" for success
	}{
		{[]string{"-url", srv.URL + "/ping"}, http.StatusOK, ""},
		{[]string{"-config", listenAll}, http.StatusOK, ""},
		{[]string{"-url", srv.URL + "/ping"}, http.StatusServiceUnavailable, "answered 503 Service Unavailable"},
		{[]string{"-url", srv.URL + "/elsewhere"}, http.StatusOK, "answered 404 Not Found"},
		{[]string{"-url", "http://127.0.0.1:1/ping"}, http.StatusOK, "connection refused"},
		{[]string{"-url", srv.URL + "/ping?hang", "-timeout", "100ms"}, http.StatusOK, "context deadline exceeded"},
		{[]string{"-config", listenAll, "-url", srv.URL + "/ping"}, http.StatusOK, "give -config or -url, not both"},
		{[]string{"-config", "nonexistent.yaml"}, http.StatusOK, "read config"},
	}
	for _, tt := range tests {
		status.Store(int32(tt.status))
		var stdout bytes.Buffer
		began := time.Now()
		err := run(context.Background(), append([]string{"headgate", "healthcheck"}, tt.args...), env(nil), &stdout, io.Discard)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: got %v, want success", tt.args, err)
		case tt.wantErr == "" && !strings.HasPrefix(stdout.String(), "alive: http://127.0.0.1:"+port+"/ping answered 200 OK"):
			t.Errorf("%q: got %q, want one line saying that /ping answered", tt.args, stdout.String())
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%q: got %v, want one line containing %q", tt.args, err, tt.wantErr)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("%q: took %v, want at most about the 2s timeout", tt.args, took)
		}
	}
}

// idpOptions shape newIdP's provider.
type idpOptions struct {
	issuer   string // the issuer discovery names; "" for the server's own URL
	keys     string // the key set's document; "" for one real key
	postOnly bool   // offer client_secret_post alone, and refuse credentials sent otherwise
	// token answers, with 400, a request whose credentials pass; "" for invalid_grant.
	token string
	hang  bool // answer nothing until the request ends
	// tokenURL is the token endpoint discovery names; "" for the server's own.
	tokenURL string
}

// newIdP starts an OpenID Connect provider that knows one client, headgate with the secret
// "client-secret", and answers its token endpoint as a provider does for a code that is not valid.
func newIdP(t *testing.T, o idpOptions) *httptest.Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if o.keys == "" {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		if err != nil {
			t.Fatal(err)
		}
		o.keys = string(b)
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.hang {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			issuer, methods := cmp.Or(o.issuer, srv.URL), `["client_secret_basic", "client_secret_post"]`
			if o.postOnly {
				methods = `["client_secret_post"]`
			}
			fmt.Fprintf(w, `{"issuer": %[1]q, "authorization_endpoint": "%[2]s/auth", "token_endpoint": %[3]q,
				"jwks_uri": "%[2]s/keys", "token_endpoint_auth_methods_supported": %[4]s}`, issuer, srv.URL, cmp.Or(o.tokenURL, srv.URL+"/token"), methods)
		case "/keys":
			io.WriteString(w, o.keys)
		case "/token":
			id, secret, basic := r.BasicAuth()
			if !basic {
				id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
			}
			if id != "headgate" || secret != "client-secret" || (basic && o.postOnly) || r.PostFormValue("grant_type") != "authorization_code" {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error": "invalid_client", "error_description": "Invalid client credentials."}`)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, cmp.Or(o.token, `{"error": "invalid_grant", "error_description": "Invalid or expired code."}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newHeadscale starts a Headscale API that accepts the API key "hskey-api-right", answers
// /version with version unless it is empty, and hangs while hang is set.
func newHeadscale(t *testing.T, version string, hang bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case hang:
			<-r.Context().Done()
		case r.URL.Path == "/version" && version != "":
			fmt.Fprintf(w, `{"version": %q, "commit": "unknown"}`, version)
		case r.URL.Path != "/api/v1/user":
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer hskey-api-right":
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		default:
			io.WriteString(w, `{"users": []}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCheck(t *testing.T) {
	good, hs := newIdP(t, idpOptions{}), newHeadscale(t, "v0.29.3", false)
	const closed = "http://127.0.0.1:1"
	tests := []struct {
		name                     string
		issuer, secret           string
		headscale, apiKey, redis string
		want                     []string // lines, or their starts
		wantErr                  bool
	}{{
		name: "everything answers", issuer: good.URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right", redis: "redis://127.0.0.1:6379/0",
		want: []string{
			"OK    oidc.issuer: discovery answered, naming this issuer",
			"OK    oidc.issuer: 1 signing keys at " + good.URL + "/keys",
			"OK    oidc.client_id, oidc.client_secret: accepted by the token endpoint",
			"OK    headscale.url: Headscale v0.29.3 at " + hs.URL,
			"OK    headscale.api_key: accepted",
			"OK    redis.url: PING answered: standalone at 127.0.0.1:6379",
		},
	}, {
		name: "wrong client secret", issuer: good.URL, secret: "wrong-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want:    []string{"FAIL  oidc.client_id, oidc.client_secret: refused by the token endpoint: 401 Unauthorized invalid_client", "SKIP  redis.url: not set"},
		wantErr: true,
	}, {
		name: "credentials in the form, where the provider wants them", issuer: newIdP(t, idpOptions{postOnly: true}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want: []string{"OK    oidc.client_id, oidc.client_secret: accepted"},
	}, {
		name: "a provider that judges nothing", issuer: newIdP(t, idpOptions{token: `{"error": "unsupported_grant_type"}`}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want: []string{"WARN  oidc.client_id, oidc.client_secret: could not verify: the token endpoint answered 400 Bad Request unsupported_grant_type\n"},
	}, {
		name: "a token endpoint that does not answer", issuer: newIdP(t, idpOptions{tokenURL: closed + "/token"}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want:    []string{"FAIL  oidc.issuer: token endpoint: Post \"" + closed + "/token\": "},
		wantErr: true,
	}, {
		name: "a token endpoint that is something else", issuer: newIdP(t, idpOptions{tokenURL: hs.URL + "/version"}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want: []string{"WARN  oidc.client_id, oidc.client_secret: could not verify: "},
	}, {
		name: "another issuer in discovery", issuer: newIdP(t, idpOptions{issuer: "https://idp.example.com"}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want:    []string{"FAIL  oidc.issuer: discovery: oidc: issuer URL provided to client", "SKIP  oidc.client_id, oidc.client_secret: not checked without discovery"},
		wantErr: true,
	}, {
		name: "no signing keys", issuer: newIdP(t, idpOptions{keys: `{"keys": []}`}).URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-right",
		want:    []string{"FAIL  oidc.issuer: signing keys at ", "OK    oidc.client_id, oidc.client_secret: accepted"},
		wantErr: true,
	}, {
		name: "nothing answers", issuer: closed + "/dex", secret: "client-secret", headscale: closed, apiKey: "hskey-api-right", redis: "redis://127.0.0.1:1/0",
		want: []string{
			"FAIL  oidc.issuer: discovery: ",
			"WARN  headscale.url: version not read: ",
			"FAIL  headscale.url: find headscale users by name: ",
			"FAIL  redis.url: PING standalone at 127.0.0.1:1: ",
		},
		wantErr: true,
	}, {
		name: "wrong API key", issuer: good.URL, secret: "client-secret", headscale: hs.URL, apiKey: "hskey-api-wrong",
		want:    []string{"FAIL  headscale.api_key: find headscale users by name: headscale answered 401 Unauthorized (check the API key)"},
		wantErr: true,
	}, {
		name: "a Headscale without /version", issuer: good.URL, secret: "client-secret", headscale: newHeadscale(t, "", false).URL, apiKey: "hskey-api-right",
		want: []string{"WARN  headscale.url: version not read: get headscale version: headscale answered 404 Not Found", "OK    headscale.api_key: accepted"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, checkConfig(tt.issuer, tt.headscale, tt.redis, "1s"))
			var stdout bytes.Buffer
			err := run(context.Background(), []string{"headgate", "-config", path, "-check"},
				env(map[string]string{"SECRET": tt.secret, "API_KEY": tt.apiKey}), &stdout, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("got %v, want an error: %v", err, tt.wantErr)
			}
			if tt.redis == "redis://127.0.0.1:6379/0" && strings.Contains(stdout.String(), "FAIL  redis.url") {
				t.Fatalf("no Redis on 127.0.0.1:6379 (start one: redis-server --daemonize yes --save \"\"):\n%s", stdout.String())
			}
			t.Logf("headgate -check:\n%s", stdout.String())
			lines := strings.Split(stdout.String(), "\n")
			if want := "OK    " + path + ": valid"; lines[0] != want {
				t.Errorf("first line: got %q, want %q", lines[0], want)
			}
			for _, want := range tt.want {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l+"\n", want) }) {
					t.Errorf("no line starting with %q in\n%s", want, stdout.String())
				}
			}
			if strings.Contains(stdout.String(), tt.secret) || strings.Contains(stdout.String(), tt.apiKey) {
				t.Errorf("a secret is in the output:\n%s", stdout.String())
			}
		})
	}
}

// TestCheckBounded: a provider and a Headscale that never answer hold -check for their
// configured timeouts, not longer.
func TestCheckBounded(t *testing.T) {
	path := writeConfig(t, checkConfig(newIdP(t, idpOptions{hang: true}).URL, newHeadscale(t, "v0.29.3", true).URL, "", "200ms"))
	var stdout bytes.Buffer
	began := time.Now()
	err := run(context.Background(), []string{"headgate", "-config", path, "-check"},
		env(map[string]string{"SECRET": "client-secret", "API_KEY": "hskey-api-right"}), &stdout, io.Discard)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("took %v, want about 400ms (two Headscale calls of 200ms)", took)
	}
	if err == nil || !strings.Contains(stdout.String(), "FAIL  oidc.issuer") || !strings.Contains(stdout.String(), "FAIL  headscale.url") {
		t.Errorf("got %v and\n%s\nwant an error and FAIL lines for oidc.issuer and headscale.url", err, stdout.String())
	}
}

// TestCheckOffline checks the file alone: nothing it names is reached.
func TestCheckOffline(t *testing.T) {
	path := writeConfig(t, checkConfig("http://127.0.0.1:1/dex", "http://127.0.0.1:1", "redis://127.0.0.1:1/0", "1s"))
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"headgate", "-config", path, "-check", "-offline"},
		env(map[string]string{"SECRET": "client-secret", "API_KEY": "k"}), &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stdout.String(), "OK    "+path+": valid\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// checkConfig returns a configuration naming issuer, headscale and redis (none when empty),
// with timeout for each, and the secrets in $SECRET and $API_KEY.
func checkConfig(issuer, headscale, redis, timeout string) string {
	return fmt.Sprintf(`
public_url: http://127.0.0.1:4180
upstream: http://127.0.0.1:3000
oidc: {issuer: %[1]q, client_id: headgate, client_secret: "${SECRET}", timeout: %[4]s}
headscale: {url: %[2]q, api_key: "${API_KEY}", timeout: %[4]s}
session: {secret: %[5]q}
redis: {url: %[3]q, timeout: %[4]s}
`, issuer, headscale, redis, timeout, strings.Repeat("k", 32))
}
