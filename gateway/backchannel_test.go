package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// postLogout sends a back-channel logout request with token, as the provider does, and returns
// the status.
func (e *testEnv) postLogout(t *testing.T, token string) int {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+"/oauth2/backchannel_logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control: got %q, want no-store", cc)
	}
	return resp.StatusCode
}

// signedInWithSID signs the IdP's current user in with the provider session sid and returns
// the session cookie as a Cookie header.
func (e *testEnv) signedInWithSID(t *testing.T, sid string) http.Header {
	t.Helper()
	e.idp.Mutate(func(c map[string]any) { c["sid"] = sid })
	_, c := e.signedIn(t)
	return http.Header{"Cookie": {c.Name + "=" + c.Value}}
}

// wantLive checks which sessions the gateway still serves.
func (e *testEnv) wantLive(t *testing.T, what string, sessions map[string]http.Header, live ...string) {
	t.Helper()
	for name, h := range sessions {
		want := http.StatusUnauthorized
		if strings.Contains(" "+strings.Join(live, " ")+" ", " "+name+" ") {
			want = http.StatusOK
		}
		if got := e.get(t, "/api", h).StatusCode; got != want {
			t.Errorf("%s: %s's session: got %d, want %d", what, name, got, want)
		}
	}
}

func TestBackchannelLogout(t *testing.T) {
	for _, memory := range []bool{false, true} {
		name := map[bool]string{false: "redis", true: "memory"}[memory]
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.memory = memory })
			withAlice(e)
			e.headscale.addUser("2", "bob", "bob@example.com", e.idp.URL+"/bob-sub")
			sessions := map[string]http.Header{
				"laptop": e.signedInWithSID(t, "sid-laptop"),
				"phone":  e.signedInWithSID(t, "sid-phone"),
			}
			e.idp.SetUser(map[string]any{"sub": "bob-sub", "email": "bob@example.com", "email_verified": true})
			sessions["bob"] = e.signedInWithSID(t, "sid-bob")

			// The provider ends one of alice's sessions there: only that one ends here.
			first := e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "sid": "sid-laptop"})
			if got := e.postLogout(t, first); got != http.StatusOK {
				t.Fatalf("logout of sid-laptop: got %d, want 200", got)
			}
			e.wantLive(t, "after sid-laptop", sessions, "phone", "bob")
			if got := e.postLogout(t, first); got != http.StatusBadRequest {
				t.Errorf("the same token again: got %d, want 400", got)
			}
			// The provider ends alice everywhere (no sid): all her sessions end, not bob's.
			if got := e.postLogout(t, e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"})); got != http.StatusOK {
				t.Fatalf("logout of alice: got %d, want 200", got)
			}
			e.wantLive(t, "after alice", sessions, "bob")
			// A token naming only a provider session.
			if got := e.postLogout(t, e.idp.LogoutToken(t, map[string]any{"sid": "sid-bob"})); got != http.StatusOK {
				t.Fatalf("logout of sid-bob: got %d, want 200", got)
			}
			e.wantLive(t, "after sid-bob", sessions)
			if !strings.Contains(e.logs.String(), `msg="back-channel logout" sub=alice-sub sid=true sessions=1`) {
				t.Errorf("log lacks the logout of alice's last session:\n%s", e.logs.String())
			}
		})
	}
}

// TestBackchannelLogoutRefused: a logout token that is not the provider's, or not for headgate,
// or not a logout token, ends nothing and is answered 400; the provider unreachable, 503.
func TestBackchannelLogoutRefused(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	session := e.signedInWithSID(t, "sid-1")
	forged := func(alg string) func() string {
		return func() string {
			e.idp.SignWith(alg)
			defer e.idp.SignWith("RS256")
			return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"})
		}
	}
	tests := map[string]func() string{
		"no token":       func() string { return "" },
		"garbage":        func() string { return "not.a.token" },
		"another client": func() string { return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "aud": "someone-else"}) },
		"another issuer": func() string {
			return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "iss": "https://evil.example"})
		},
		"expired": func() string {
			return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "exp": time.Now().Add(-time.Minute).Unix()})
		},
		"an ID token (nonce)":  func() string { return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "nonce": "n"}) },
		"no logout event":      func() string { return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "events": nil}) },
		"no jti":               func() string { return e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub", "jti": nil}) },
		"neither sub nor sid":  func() string { return e.idp.LogoutToken(t, nil) },
		"alg none":             forged("none"),
		"HMAC with the secret": forged("HS256"),
		"tampered": func() string {
			raw := e.idp.LogoutToken(t, map[string]any{"sub": "bob-sub"})
			parts := strings.Split(raw, ".")
			other := strings.Split(e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"}), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		},
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if got := e.postLogout(t, token()); got != http.StatusBadRequest {
				t.Errorf("got %d, want 400", got)
			}
			e.wantLive(t, name, map[string]http.Header{"alice": session}, "alice")
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp := e.get(t, "/oauth2/backchannel_logout?logout_token="+e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"}), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("got %d, want 404 (headgate's unknown /oauth2/ answer)", resp.StatusCode)
		}
		e.wantLive(t, "GET", map[string]http.Header{"alice": session}, "alice")
	})
	t.Run("oversized", func(t *testing.T) {
		if got := e.postLogout(t, strings.Repeat("a", maxLogoutRequest)); got != http.StatusBadRequest {
			t.Errorf("got %d, want 400", got)
		}
	})
}

// TestBackchannelLogoutForgeriesDoNotReachTheProvider: tokens whose signature does not verify
// make headgate fetch the provider's keys at most once per Timing.LogoutKeysRefresh, not once
// each.
func TestBackchannelLogoutForgeriesDoNotReachTheProvider(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	session := e.signedInWithSID(t, "sid-1")
	before := e.idp.JWKSCalls()
	for range 20 {
		valid := strings.Split(e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"}), ".")
		other := strings.Split(e.idp.LogoutToken(t, map[string]any{"sub": "bob-sub"}), ".")
		forged := valid[0] + "." + other[1] + "." + valid[2]
		if got := e.postLogout(t, forged); got != http.StatusBadRequest {
			t.Fatalf("forged token: got %d, want 400", got)
		}
	}
	if n := e.idp.JWKSCalls() - before; n > 1 {
		t.Errorf("20 forged tokens made %d key set requests at the provider, want at most 1", n)
	}
	e.wantLive(t, "after the forgeries", map[string]http.Header{"alice": session}, "alice")
	if got := e.postLogout(t, e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"})); got != http.StatusOK {
		t.Errorf("a genuine token after the forgeries: got %d, want 200", got)
	}
	e.wantLive(t, "after the genuine logout", map[string]http.Header{"alice": session})
}

// TestBackchannelLogoutProviderDown: once headgate has the provider's keys, a logout token
// verifies while the provider is down; before that it cannot, and the provider is told to try
// again.
func TestBackchannelLogoutProviderDown(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	session := e.signedInWithSID(t, "sid-1")
	token := e.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"})
	e.idp.Down(true)
	if got := e.postLogout(t, token); got != http.StatusOK {
		t.Errorf("provider down after a sign-in: got %d, want 200", got)
	}
	e.wantLive(t, "after the logout", map[string]http.Header{"alice": session})

	fresh := newTestEnv(t)
	token = fresh.idp.LogoutToken(t, map[string]any{"sub": "alice-sub"})
	fresh.idp.Down(true)
	if got := fresh.postLogout(t, token); got != http.StatusServiceUnavailable {
		t.Errorf("provider down before any discovery: got %d, want 503", got)
	}
}

// TestBackchannelLogoutWithoutExp: with oidc.logout_token_max_age, a logout token that has no
// exp (as Ory Hydra sends them) ends the sessions it names while its iat is within that age,
// once; every other check still applies. Without it, such a token is refused and the log names
// the key.
func TestBackchannelLogoutWithoutExp(t *testing.T) {
	const maxAge = 2 * time.Minute
	e := newTestEnv(t, func(o *envOptions) { o.edit = func(c *Config) { c.OIDC.LogoutTokenMaxAge = maxAge } })
	withAlice(e)
	sessions := map[string]http.Header{"laptop": e.signedInWithSID(t, "sid-laptop"), "phone": e.signedInWithSID(t, "sid-phone")}
	undated := func(claims map[string]any) string {
		c := map[string]any{"exp": nil, "iat": e.clock.Now().Unix()}
		for k, v := range claims {
			c[k] = v
		}
		return e.idp.LogoutToken(t, c)
	}

	refused := map[string]string{
		"no logout event":   undated(map[string]any{"sid": "sid-laptop", "events": nil}),
		"a nonce":           undated(map[string]any{"sid": "sid-laptop", "nonce": "n"}),
		"no jti":            undated(map[string]any{"sid": "sid-laptop", "jti": nil}),
		"no iat":            undated(map[string]any{"sid": "sid-laptop", "iat": nil}),
		"another client":    undated(map[string]any{"sid": "sid-laptop", "aud": "someone-else"}),
		"from the future":   undated(map[string]any{"sid": "sid-laptop", "iat": e.clock.Now().Add(5 * time.Minute).Unix()}),
		"too old":           undated(map[string]any{"sid": "sid-laptop", "iat": e.clock.Now().Add(-maxAge - time.Second).Unix()}),
		"an expired exp":    e.idp.LogoutToken(t, map[string]any{"sid": "sid-laptop", "exp": e.clock.Now().Add(-time.Minute).Unix()}),
		"sub and sid empty": undated(nil),
	}
	for name, token := range refused {
		if got := e.postLogout(t, token); got != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", name, got)
		}
	}
	e.wantLive(t, "after the refused tokens", sessions, "laptop", "phone")

	laptop := undated(map[string]any{"sid": "sid-laptop"})
	if got := e.postLogout(t, laptop); got != http.StatusOK {
		t.Fatalf("an undated token for sid-laptop: got %d, want 200", got)
	}
	e.wantLive(t, "after sid-laptop", sessions, "phone")
	// Remembered for the maximum age: a replay just inside it is refused.
	e.clock.Advance(maxAge - time.Second)
	if got := e.postLogout(t, laptop); got != http.StatusBadRequest {
		t.Errorf("the same token again: got %d, want 400", got)
	}
	if got := e.postLogout(t, undated(map[string]any{"sub": "alice-sub"})); got != http.StatusOK {
		t.Fatalf("an undated token for alice: got %d, want 200", got)
	}
	e.wantLive(t, "after alice", sessions)
	// (iat is in whole seconds, so the ages logged are not exact.)
	for _, want := range []string{"ago, longer than oidc.logout_token_max_age (2m0s)", "ahead of headgate's clock",
		"logout token without exp: no iat", `msg="back-channel logout" sub="" sid=true sessions=1`, "expected audience"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, e.logs.String())
		}
	}

	t.Run("not configured", func(t *testing.T) {
		e := newTestEnv(t)
		withAlice(e)
		session := e.signedInWithSID(t, "sid-1")
		if got := e.postLogout(t, e.idp.LogoutToken(t, map[string]any{"sid": "sid-1", "exp": nil})); got != http.StatusBadRequest {
			t.Errorf("got %d, want 400", got)
		}
		e.wantLive(t, "after the undated token", map[string]http.Header{"alice": session}, "alice")
		if want := "oidc.logout_token_max_age lets in tokens without exp"; !strings.Contains(e.logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, e.logs.String())
		}
	})
}
