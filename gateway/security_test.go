package gateway

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSafeRedirect(t *testing.T) {
	g := &Gateway{cfg: Config{RedirectDomains: []string{"app.example.com", ".corp.example"}}}
	g.public, _ = url.Parse("https://gate.example.com")
	tests := []struct {
		rd, want string
	}{
		{"", "/"},
		{"/", "/"},
		{"/admin", "/admin"},
		{"/admin/machines?tab=1#top", "/admin/machines?tab=1#top"},
		{"/a%20b", "/"},
		{"https://gate.example.com/admin?x=1", "/admin?x=1"},
		{"https://GATE.example.com/admin", "/admin"},
		{"https://app.example.com/x", "https://app.example.com/x"},
		{"https://deep.corp.example/x", "https://deep.corp.example/x"},
		{"http://app.example.com/x", "/"}, // downgrade to http
		{"https://corp.example/x", "/"},   // ".corp.example" means subdomains only
		// Open-redirect payloads from public advisories and cheat sheets.
		{"//evil.com", "/"},
		{"///evil.com", "/"},
		{"////evil.com", "/"},
		{"/\\evil.com", "/"},
		{"\\/evil.com", "/"},
		{"\\\\evil.com", "/"},
		{"/%2f%2fevil.com", "/"},
		{"/%2F%2Fevil.com", "/"},
		{"%2f%2fevil.com", "/"},
		{"/%5cevil.com", "/"},
		{"/%09/evil.com", "/"},
		{"/\t/evil.com", "/"},
		{"/%0a/evil.com", "/"},
		{"/\n/evil.com", "/"},
		{"/%0d/evil.com", "/"},
		{" //evil.com", "/"},
		{"https:evil.com", "/"},
		{"https:/evil.com", "/"},
		{"https://evil.com", "/"},
		{"http://evil.com", "/"},
		{"HTTPS://evil.com", "/"},
		{"//gate.example.com@evil.com", "/"},
		{"https://gate.example.com@evil.com", "/"},
		{"https://gate.example.com.evil.com/", "/"},
		{"https://evil.com\\@gate.example.com", "/"},
		{"https://evil.com#@gate.example.com", "/"},
		{"https://app.example.com.evil.com/", "/"},
		{"javascript:alert(1)", "/"},
		{"javascript://%0aalert(1)", "/"},
		{"data:text/html,<script>alert(1)</script>", "/"},
		{"/\u2215\u2215evil.com", "/"}, // division slash look-alikes
		{"/\uff0f\uff0fevil.com", "/"}, // fullwidth solidus
		{"/%ef%bc%8f%ef%bc%8fevil.com", "/"},
		{"/。evil.com", "/"},
		{"https://evil。com", "/"},
		{"//evil%E3%80%82com", "/"},
		{"/\x00/evil.com", "/"},
		{"https://gate.example.com//evil.com", "/"},
		{"evil.com", "/"},
		{".evil.com", "/"},
		{"https://.corp.example/x", "/"},
		{"https://App.eXAmple.Com:", "/"},
		{"https://app.example.com:8443/x", "https://app.example.com:8443/x"},
		{strings.Repeat("/a", 2000), "/"},
	}
	for _, tt := range tests {
		if got := g.safeRedirect(tt.rd); got != tt.want {
			t.Errorf("safeRedirect(%q): got %q, want %q", tt.rd, got, tt.want)
		}
	}
}

func TestOwnedHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Headscale-User", true},
		{"x-headscale-user", true},
		{"X-HEADSCALE-USER", true},
		{"X_Headscale_User", true},
		{"x_headscale-user-id", true},
		{"X-Headscale-Anything", true},
		{"X-Forwarded-User", true},
		{"X_Forwarded_Email", true},
		{"X-Forwarded-Preferred-Username", true},
		{"X-Auth-Request-User", true},
		{"Remote-User", true},
		{"Remote_user", true},
		{"X-Forwarded-For", false},
		{"X-Forwarded-Host", false},
		{"X-Headscale", false},
		{"Accept", false},
		{"X-Forwarded-Userx", false},
	}
	for _, tt := range tests {
		if got := ownedHeader(tt.name); got != tt.want {
			t.Errorf("ownedHeader(%q): got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// rawGet sends a request whose header lines are written exactly as given, so that names Go
// would canonicalize (or refuse to send) reach the gateway as an attacker writes them.
func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	_, c := e.signedIn(t)
	spoofs := []struct {
		name   string
		header http.Header
	}{
		{"canonical", http.Header{"X-Headscale-User": {"root"}}},
		{"lower case", http.Header{"x-headscale-user": {"root"}}},
		{"upper case", http.Header{"X-HEADSCALE-USER": {"root"}}},
		{"underscores", http.Header{"X_Headscale_User": {"root"}}},
		{"mixed underscores", http.Header{"x_headscale-user": {"root"}}},
		{"repeated", http.Header{"X-Headscale-User": {"root", "admin"}}},
		{"user id", http.Header{"X-Headscale-User-Id": {"0"}}},
		{"named in Connection", http.Header{"Connection": {"X-Headscale-User"}, "X-Headscale-User": {"root"}}},
		{"forwarded user", http.Header{"X-Forwarded-User": {"root"}, "X-Forwarded-Email": {"root@example.com"}}},
		{"remote user", http.Header{"Remote-User": {"root"}}},
		{"client address", http.Header{"X-Real-IP": {"root"}, "True-Client-IP": {"root"}, "X_Cluster_Client_IP": {"root"}}},
		{"path override", http.Header{"X-Original-URL": {"root"}, "X-Rewrite-Url": {"root"}, "x-original-uri": {"root"}}},
		{"method override", http.Header{"X-HTTP-Method-Override": {"root"}, "X-Http-Method": {"root"}, "X-Method-Override": {"root"}}},
	}
	paths := []struct {
		path     string
		withUser bool
	}{
		{"/admin", true},
		{"/admin/healthz", false}, // skip_auth: no identity at all
	}
	for _, p := range paths {
		for _, s := range spoofs {
			t.Run(p.path+"/"+s.name, func(t *testing.T) {
				h := s.header.Clone()
				h.Set("Cookie", c.Name+"="+c.Value)
				before := e.upstream.count()
				resp := e.get(t, p.path, h)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status: got %d, want 200", resp.StatusCode)
				}
				if e.upstream.count() != before+1 {
					t.Fatal("request did not reach the upstream")
				}
				up := e.upstream.last()
				for name, values := range up.Header {
					if !ownedHeader(name) {
						continue
					}
					for _, v := range values {
						if v == "root" || v == "admin" || v == "0" || v == "root@example.com" {
							t.Errorf("spoofed %s: %q reached the upstream", name, v)
						}
					}
				}
				got := up.Header.Values("X-Headscale-User")
				if p.withUser && (len(got) != 1 || got[0] != "alice") {
					t.Errorf("X-Headscale-User: got %q, want [alice]", got)
				}
				if !p.withUser && len(got) != 0 {
					t.Errorf("skip_auth path got X-Headscale-User %q, want none", got)
				}
			})
		}
	}
}

func TestSkipAuthPathConfusion(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		path string
		want int // 200: proxied without a session; 401: needs a session; 307: cleaned by the mux first
	}{
		{"/admin/healthz", http.StatusOK},
		{"/admin/assets/app.js", http.StatusOK},
		{"/admin/assets/", http.StatusOK},
		{"/admin/healthz/", http.StatusUnauthorized},
		{"/admin/healthz.", http.StatusUnauthorized},
		{"/admin/healthzz", http.StatusUnauthorized},
		{"/Admin/healthz", http.StatusUnauthorized},
		{"/admin/HEALTHZ", http.StatusUnauthorized},
		{"/admin/assets", http.StatusUnauthorized},
		{"/admin/assets/../users", http.StatusTemporaryRedirect},
		{"/admin/assets/%2e%2e/users", http.StatusUnauthorized},
		{"/admin/assets%2f../users", http.StatusUnauthorized},
		{"/admin%2fhealthz", http.StatusUnauthorized},
		{"/admin/healthz%2f..%2fusers", http.StatusUnauthorized},
		{"//admin/healthz", http.StatusUnauthorized}, // read as host "admin", path "/healthz"
		{"/admin//healthz", http.StatusTemporaryRedirect},
		{"/admin/./healthz", http.StatusTemporaryRedirect},
		{"/admin/users?/admin/healthz", http.StatusUnauthorized},
		{"/admin/users#/admin/healthz", http.StatusUnauthorized},
		{"/admin/users;/admin/healthz", http.StatusUnauthorized},
		{"/admin/healthz;x", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, e.srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Opaque keeps the path exactly as written on the wire.
			req.URL.Opaque = tt.path
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: got %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
			if resp.StatusCode == http.StatusOK {
				if up := e.upstream.last(); up.Header.Get("X-Headscale-User") != "" {
					t.Errorf("skip_auth request carried an identity")
				}
			}
		})
	}
}

func TestCallbackAttacks(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(e *testEnv)
		want   int
		reason string
	}{
		{"wrong audience", func(e *testEnv) { e.idp.Mutate(func(c map[string]any) { c["aud"] = "someone-else" }) }, http.StatusUnauthorized, "token_invalid"},
		{"wrong issuer", func(e *testEnv) { e.idp.Mutate(func(c map[string]any) { c["iss"] = "https://evil.example" }) }, http.StatusUnauthorized, "token_invalid"},
		{"expired", func(e *testEnv) {
			e.idp.Mutate(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
		}, http.StatusUnauthorized, "token_invalid"},
		{"wrong nonce", func(e *testEnv) { e.idp.Mutate(func(c map[string]any) { c["nonce"] = "forged" }) }, http.StatusUnauthorized, "token_invalid"},
		{"alg none", func(e *testEnv) { e.idp.SignWith("none") }, http.StatusUnauthorized, "token_invalid"},
		{"HS256 with client secret", func(e *testEnv) { e.idp.SignWith("HS256") }, http.StatusUnauthorized, "token_invalid"},
		{"provider error", func(e *testEnv) { e.idp.AuthorizeError("access_denied") }, http.StatusForbidden, "idp_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.memory = true })
			withAlice(e)
			tt.setup(e)
			b, resp := e.signIn(t, "/admin")
			body := readBody(t, resp)
			if resp.StatusCode != tt.want {
				t.Fatalf("status: got %d, want %d; body %q", resp.StatusCode, tt.want, body)
			}
			if e.upstream.count() != 0 {
				t.Error("the upstream was reached")
			}
			for _, c := range b.Jar.Cookies(mustURL(t, e.srv.URL)) {
				if c.Name == "_headgate" {
					t.Error("a session cookie was set")
				}
			}
		})
	}
}

func TestCallbackStateAndReplay(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	// Capture the callback URL instead of following it.
	b := newBrowser(t)
	var callback string
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/oauth2/callback" {
			callback = req.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := b.Get(e.srv.URL + "/oauth2/start?rd=/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if callback == "" {
		t.Fatal("never redirected to the callback")
	}
	cb := mustURL(t, callback)

	// Missing and mismatched state, with the real login cookie present.
	for name, mutate := range map[string]func(q url.Values){
		"missing state":    func(q url.Values) { q.Del("state") },
		"mismatched state": func(q url.Values) { q.Set("state", "x"+q.Get("state")) },
	} {
		u := *cb
		q := u.Query()
		mutate(q)
		u.RawQuery = q.Encode()
		resp, err := b.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", name, resp.StatusCode)
		}
	}
	// Keep the login cookie, as an attacker who copied it would.
	var saved []string
	for _, c := range b.Jar.Cookies(mustURL(t, e.srv.URL)) {
		if strings.HasPrefix(c.Name, "_headgate_login_") {
			saved = append(saved, c.Name+"="+c.Value)
		}
	}
	if len(saved) == 0 {
		t.Fatal("no login cookie was set")
	}
	// The real callback succeeds once.
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = b.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: got %d, want 302", resp.StatusCode)
	}
	// Replaying it, even with the login cookie restored by an attacker who kept it, fails.
	other := newBrowser(t)
	resp, err = other.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback without its login cookie: got %d, want 400", resp.StatusCode)
	}
	replay := e.get(t, strings.TrimPrefix(callback, e.srv.URL), http.Header{"Cookie": {strings.Join(saved, "; ")}})
	if replay.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback with the copied login cookie: got %d, want 400", replay.StatusCode)
	}
	if !strings.Contains(e.logs.String(), "replayed") {
		t.Errorf("the replay was not logged")
	}
	// Nothing secret reached the log: not the code, the state, the client secret, the login
	// cookie or the session cookie.
	secrets := []string{cb.Query().Get("code"), cb.Query().Get("state"), e.idp.ClientSecret, e.sessionCookie(t, b).Value}
	secrets = append(secrets, saved...)
	logs := e.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log contains a secret value %.12q...", s)
		}
	}
}

func TestIdentityProviderDown(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	b, resp := e.signIn(t, "/")
	readBody(t, resp)
	e.idp.Down(true)
	// The existing session is unaffected.
	resp, err := b.Get(e.srv.URL + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("existing session while the IdP is down: got %d %q", resp.StatusCode, body)
	}
	// A new sign-in gets a readable page, not a hang, a bare error or a redirect to a provider
	// that does not answer: on this gateway, which discovered the provider before the outage
	// (once its last reachability check is stale), and on a fresh one.
	e.clock.Advance(e.gw.timing.Probe)
	resp = e.get(t, "/oauth2/start?rd=/", http.Header{"Accept": {"text/html"}})
	if body := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Identity provider unreachable") {
		t.Errorf("sign-in while the IdP is down, after discovery: got %d %q", resp.StatusCode, body)
	}
	e2 := newTestEnv(t)
	e2.idp.Down(true)
	resp = e2.get(t, "/oauth2/start?rd=/", http.Header{"Accept": {"text/html"}})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Identity provider unreachable") {
		t.Errorf("sign-in while the IdP is down: got %d %q", resp.StatusCode, body)
	}
	e2.idp.Down(false)
	e2.clock.Advance(e2.gw.timing.Rediscover)
	e2.headscale.addUser("1", "alice", "alice@example.com", e2.idp.URL+"/alice-sub")
	if _, resp := e2.signIn(t, "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("sign-in after the IdP recovered: got %d", resp.StatusCode)
	}
}

func TestIdentityProviderKeyRotation(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	e.signedIn(t)
	e.idp.RotateKey()
	if _, resp := e.signIn(t, "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in after key rotation: got %d, want 200", resp.StatusCode)
	}
}

func TestHeadscaleDown(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	e.signedIn(t)
	e.headscale.set(func(h *headscaleDouble) { h.down = true })
	// Alice's link is cached: she signs in again without Headscale.
	if _, resp := e.signIn(t, "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("cached link while Headscale is down: got %d, want 200", resp.StatusCode)
	}
	// Bob's is not: a readable 503 page.
	e.idp.SetUser(map[string]any{"sub": "bob-sub", "email": "bob@example.com", "email_verified": true})
	_, resp := e.signIn(t, "/")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Headscale unreachable") {
		t.Errorf("uncached link while Headscale is down: got %d %q", resp.StatusCode, body)
	}
}

// rawStatus sends one request, written as is, to the gateway and returns the status of its
// answer.
func rawStatus(t *testing.T, e *testEnv, request string) int {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSkipAuthRefusesEverySpellingButThePlainOne: a skip_auth path matches only when the request
// is plain; every trick that an upstream might read as another path (path parameters, any
// percent-encoding, backslashes, overlong UTF-8, odd methods) is authenticated like any request.
func TestSkipAuthRefusesEverySpellingButThePlainOne(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.skipAuth = []string{"/admin/healthz", "/admin/assets/"} })
	for _, line := range []string{
		"GET /admin/healthz", "HEAD /admin/healthz", "GET /admin/assets/app.js", "GET /admin/assets/a-b_c~d.1.js",
		"POST /admin/assets/x", "OPTIONS /admin/assets/x", "GET /admin/assets/app.js?v=1;x=%2e%2e",
	} {
		if got := rawStatus(t, e, line+" HTTP/1.1\r\nHost: gate\r\n\r\n"); got != http.StatusOK {
			t.Errorf("%s: got %d, want 200 (proxied without a session)", line, got)
		}
	}
	reached := e.upstream.count()
	for _, line := range []string{
		"GET /admin/assets/..;/users", "GET /admin/assets/..;x=1/users", "GET /admin/assets/;/users",
		"GET /admin/healthz;jsessionid=1", "GET /admin/healthz;", "GET /admin/assets/app.js;.css",
		"GET /admin/assets/%2e%2e/users", "GET /admin/assets/.%2e/users", "GET /admin/assets/%2E%2E/users",
		"GET /admin/assets/%252e%252e/users", "GET /admin/assets/%25252e%25252e/users",
		"GET /admin/assets/%5C..%5Cusers", "GET /admin/assets/%5c%2e%2e%5cusers", "GET /admin/assets/..%5Cusers",
		"GET /admin/assets/%C0%AE%C0%AE/users", "GET /admin/assets/%c0%ae%c0%ae%c0%afusers",
		"GET /admin/assets/%E0%80%AE%E0%80%AE/users", "GET /admin/assets/%2fusers", "GET /admin/assets%2f..%2fusers",
		"GET /admin/assets/%00/users", "GET /admin/assets/app.js%00.png", "GET /admin/assets/%20/users",
		"GET /admin/assets/%61pp.js", "GET /admin/healt%68z", "GET /admin/assets/\\..\\users",
		"GET /admin/assets/..\\users", "GET /admin/assets/!..!/users", "GET /admin/assets/@/users",
		"GET /admin/assets/$x", "GET /admin/assets/x:y", "GET /admin/assets/x+y", "GET /admin/assets/x,y",
		"GET /admin/assets/\xc3\xa4pp.js", "GET http://gate/admin/healthz",
		"CONNECT /admin/assets/x", "TRACE /admin/assets/x", "PROPFIND /admin/assets/x", "MOVE /admin/assets/x",
	} {
		if got := rawStatus(t, e, line+" HTTP/1.1\r\nHost: gate\r\n\r\n"); got == http.StatusOK {
			t.Errorf("%s: got 200, want it authenticated", line)
		}
	}
	if got := e.upstream.count(); got != reached {
		t.Errorf("the upstream received %d of those without a session, want none", got-reached)
	}
}
