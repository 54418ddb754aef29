package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// These tests hold the test provider to what go-oidc and x/oauth2, the libraries the gateway
// uses, expect of a real one, so the gateway's tests exercise real protocol handling.

const idpTestRedirect = "http://127.0.0.1:1/callback?from=test"

var idpNoRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// idpRelyingParty is what a relying party learns from the provider by discovery.
type idpRelyingParty struct {
	ctx      context.Context
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth2   oauth2.Config
}

func discoverIdP(t *testing.T, idp *testIdP, style oauth2.AuthStyle) *idpRelyingParty {
	t.Helper()
	ctx := oidc.ClientContext(t.Context(), http.DefaultClient)
	p, err := oidc.NewProvider(ctx, idp.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	ep := p.Endpoint()
	ep.AuthStyle = style
	return &idpRelyingParty{ctx: ctx, provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: idp.ClientID}),
		oauth2: oauth2.Config{ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, Endpoint: ep,
			RedirectURL: idpTestRedirect, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}},
	}
}

// idpGrant is one authorization's secrets and the code it yielded.
type idpGrant struct{ state, nonce, verifier, code string }

// authorize runs the authorization request without following the redirect back.
func (rp *idpRelyingParty) authorize(t *testing.T) idpGrant {
	t.Helper()
	g := idpGrant{state: idpRandom(), nonce: idpRandom(), verifier: oauth2.GenerateVerifier()}
	loc := idpRedirect(t, rp.oauth2.AuthCodeURL(g.state, oidc.Nonce(g.nonce), oauth2.S256ChallengeOption(g.verifier)))
	q := loc.Query()
	if got := q.Get("state"); got != g.state {
		t.Fatalf("state: got %q, want %q", got, g.state)
	}
	if got := q.Get("from"); got != "test" {
		t.Errorf("redirect_uri's own query: got from=%q, want test", got)
	}
	if g.code = q.Get("code"); g.code == "" {
		t.Fatalf("no code in %s", loc.Redacted())
	}
	return g
}

// idpRedirect GETs u and returns where it redirects to.
func idpRedirect(t *testing.T, u string) *url.URL {
	t.Helper()
	resp, err := idpNoRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// exchange redeems g and verifies the ID token.
func (rp *idpRelyingParty) exchange(t *testing.T, g idpGrant) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	tok, err := rp.oauth2.Exchange(rp.ctx, g.code, oauth2.VerifierOption(g.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := rp.verifier.Verify(rp.ctx, raw)
	if err != nil {
		t.Fatalf("verify id token: %v", err)
	}
	return tok, idt
}

func TestIdPCodeFlow(t *testing.T) {
	for name, style := range map[string]oauth2.AuthStyle{"basic": oauth2.AuthStyleInHeader, "post": oauth2.AuthStyleInParams} {
		t.Run(name, func(t *testing.T) {
			idp := newTestIdP(t)
			rp := discoverIdP(t, idp, style)
			g := rp.authorize(t)
			tok, idt := rp.exchange(t, g)
			if idt.Nonce != g.nonce {
				t.Errorf("nonce: got %q, want %q", idt.Nonce, g.nonce)
			}
			if idt.Subject != "alice-sub" || idt.Issuer != idp.URL {
				t.Errorf("sub, iss: got %q, %q, want alice-sub, %q", idt.Subject, idt.Issuer, idp.URL)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			var c struct {
				Email    string `json:"email"`
				Verified bool   `json:"email_verified"`
				Username string `json:"preferred_username"`
			}
			if err := idt.Claims(&c); err != nil || c.Email != "alice@example.com" || !c.Verified || c.Username != "alice" {
				t.Errorf("claims: got %+v (%v), want alice@example.com verified, alice", c, err)
			}
			ui, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Subject != "alice-sub" || ui.Email != "alice@example.com" {
				t.Fatalf("userinfo: got %+v, %v", ui, err)
			}

			// A replayed code is refused and revokes the access token it was exchanged for.
			_, err = rp.oauth2.Exchange(rp.ctx, g.code, oauth2.VerifierOption(g.verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_grant" {
				t.Errorf("replayed code: got %v, want 400 invalid_grant", err)
			}
			if _, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(tok)); err == nil {
				t.Error("userinfo accepted the access token of a replayed code")
			}
			if got := idp.TokenCalls(); got != 2 {
				t.Errorf("TokenCalls: got %d, want 2", got)
			}
		})
	}
}

func TestIdPRefusesBadAuthorizeRequests(t *testing.T) {
	idp := newTestIdP(t)
	valid := url.Values{"response_type": {"code"}, "client_id": {idp.ClientID}, "redirect_uri": {idpTestRedirect},
		"scope": {"openid email"}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
	tests := map[string]func(q url.Values){
		"valid":                func(q url.Values) {},
		"no state":             func(q url.Values) { q.Del("state") },
		"no nonce":             func(q url.Values) { q.Del("nonce") },
		"no code_challenge":    func(q url.Values) { q.Del("code_challenge") },
		"plain challenge":      func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"no challenge method":  func(q url.Values) { q.Del("code_challenge_method") },
		"short challenge":      func(q url.Values) { q.Set("code_challenge", "abc") },
		"unknown client":       func(q url.Values) { q.Set("client_id", "other") },
		"no openid scope":      func(q url.Values) { q.Set("scope", "email profile") },
		"implicit flow":        func(q url.Values) { q.Set("response_type", "id_token") },
		"relative redirect":    func(q url.Values) { q.Set("redirect_uri", "/callback") },
		"javascript redirect":  func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)") },
		"redirect fragment":    func(q url.Values) { q.Set("redirect_uri", idpTestRedirect+"#x") },
		"repeated state":       func(q url.Values) { q.Add("state", "t") },
		"fragment mode":        func(q url.Values) { q.Set("response_mode", "fragment") },
		"empty redirect":       func(q url.Values) { q.Set("redirect_uri", "") },
		"missing redirect_uri": func(q url.Values) { q.Del("redirect_uri") },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range valid {
				q[k] = append([]string(nil), v...)
			}
			mutate(q)
			resp, err := idpNoRedirect.Get(idp.URL + "/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusBadRequest
			if name == "valid" {
				want = http.StatusFound
			}
			if resp.StatusCode != want {
				t.Errorf("got %d, want %d", resp.StatusCode, want)
			}
		})
	}
}

func TestIdPRefusesBadTokenRequests(t *testing.T) {
	idp := newTestIdP(t)
	rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	expire := func(f url.Values, r *http.Request) {
		idp.mu.Lock()
		defer idp.mu.Unlock()
		idp.codes[f.Get("code")].expires = time.Now().Add(-time.Second)
	}
	tests := []struct {
		name   string
		edit   func(f url.Values, r *http.Request)
		status int
		code   string
		desc   string // part of error_description, proving why it was refused
	}{
		{"valid", func(f url.Values, r *http.Request) {}, http.StatusOK, "", ""},
		{"wrong verifier", func(f url.Values, r *http.Request) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, http.StatusBadRequest, "invalid_grant", "code_verifier"},
		{"no verifier", func(f url.Values, r *http.Request) { f.Del("code_verifier") }, http.StatusBadRequest, "invalid_grant", "code_verifier"},
		{"other redirect_uri", func(f url.Values, r *http.Request) { f.Set("redirect_uri", "http://127.0.0.1:1/callback") }, http.StatusBadRequest, "invalid_grant", "redirect_uri"},
		{"unknown code", func(f url.Values, r *http.Request) { f.Set("code", "forged") }, http.StatusBadRequest, "invalid_grant", "unknown code"},
		{"expired code", expire, http.StatusBadRequest, "invalid_grant", "expired"},
		{"wrong grant type", func(f url.Values, r *http.Request) { f.Set("grant_type", "password") }, http.StatusBadRequest, "unsupported_grant_type", ""},
		{"wrong secret", func(f url.Values, r *http.Request) { r.SetBasicAuth(idp.ClientID, "guess") }, http.StatusUnauthorized, "invalid_client", ""},
		{"no client auth", func(f url.Values, r *http.Request) { r.Header.Del("Authorization") }, http.StatusUnauthorized, "invalid_client", ""},
		{"other client", func(f url.Values, r *http.Request) { f.Set("client_id", "other") }, http.StatusBadRequest, "invalid_request", "client_id"},
		{"two auth methods", func(f url.Values, r *http.Request) { f.Set("client_secret", idp.ClientSecret) }, http.StatusBadRequest, "invalid_request", "more than one"},
		{"repeated code", func(f url.Values, r *http.Request) { f.Add("code", f.Get("code")) }, http.StatusBadRequest, "invalid_request", "repeated"},
		{"json body", func(f url.Values, r *http.Request) { r.Header.Set("Content-Type", "application/json") }, http.StatusBadRequest, "invalid_request", "form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := rp.authorize(t)
			f := url.Values{"grant_type": {"authorization_code"}, "code": {g.code},
				"redirect_uri": {idpTestRedirect}, "code_verifier": {g.verifier}}
			req, err := http.NewRequest(http.MethodPost, idp.URL+"/token", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth(url.QueryEscape(idp.ClientID), url.QueryEscape(idp.ClientSecret))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			tt.edit(f, req)
			enc := f.Encode()
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(enc)), int64(len(enc))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
				IDToken     string `json:"id_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("token response is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || body.Error != tt.code {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body.Error, tt.status, tt.code)
			}
			if !strings.Contains(body.Description, tt.desc) {
				t.Errorf("error_description: got %q, want it to mention %q", body.Description, tt.desc)
			}
			if tt.status == http.StatusOK && body.IDToken == "" {
				t.Error("no id_token")
			}
		})
	}
}

func TestIdPHostileTokens(t *testing.T) {
	tests := []struct {
		name  string
		setup func(idp *testIdP)
		check func(t *testing.T, raw string, idt *oidc.IDToken, err error)
	}{
		{"alg none", func(idp *testIdP) { idp.SignWith("none") }, func(t *testing.T, raw string, _ *oidc.IDToken, err error) {
			if header := idpTokenHeader(t, raw); header["alg"] != "none" || !strings.HasSuffix(raw, ".") {
				t.Errorf("token is not unsigned: header %v", header)
			}
			idpWantRefused(t, err)
		}},
		{"HS256 with the client secret", func(idp *testIdP) { idp.SignWith("HS256") }, func(t *testing.T, raw string, _ *oidc.IDToken, err error) {
			if header := idpTokenHeader(t, raw); header["alg"] != "HS256" || header["kid"] == nil {
				t.Errorf("header: got %v, want HS256 with the RSA kid", header)
			}
			idpWantRefused(t, err)
		}},
		{"wrong audience", func(idp *testIdP) { idp.Mutate(func(c map[string]any) { c["aud"] = "someone-else" }) },
			func(t *testing.T, _ string, _ *oidc.IDToken, err error) { idpWantRefused(t, err) }},
		{"wrong issuer", func(idp *testIdP) { idp.Mutate(func(c map[string]any) { c["iss"] = "https://evil.example" }) },
			func(t *testing.T, _ string, _ *oidc.IDToken, err error) { idpWantRefused(t, err) }},
		{"expired", func(idp *testIdP) {
			idp.Mutate(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
		},
			func(t *testing.T, _ string, _ *oidc.IDToken, err error) {
				var expired *oidc.TokenExpiredError
				if !errors.As(err, &expired) {
					t.Errorf("got %v, want a TokenExpiredError", err)
				}
			}},
		{"wrong nonce", func(idp *testIdP) { idp.Mutate(func(c map[string]any) { c["nonce"] = "forged" }) },
			func(t *testing.T, _ string, idt *oidc.IDToken, err error) {
				// go-oidc leaves the nonce to the caller: the token verifies and carries the forgery.
				if err != nil || idt.Nonce != "forged" {
					t.Errorf("got %v, want a valid token with nonce forged", err)
				}
			}},
		{"mutations accumulate", func(idp *testIdP) {
			idp.Mutate(func(c map[string]any) { delete(c, "sub") })
			idp.Mutate(func(c map[string]any) { c["groups"] = []string{"admins"} })
		}, func(t *testing.T, _ string, idt *oidc.IDToken, err error) {
			var c map[string]any
			if err != nil || idt.Claims(&c) != nil || c["sub"] != nil || c["groups"] == nil {
				t.Errorf("got %v %v, want a token without sub and with groups", c, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newTestIdP(t)
			rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
			tt.setup(idp)
			g := rp.authorize(t)
			tok, err := rp.oauth2.Exchange(rp.ctx, g.code, oauth2.VerifierOption(g.verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := rp.verifier.Verify(rp.ctx, raw)
			tt.check(t, raw, idt, err)
		})
	}
}

func idpWantRefused(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Error("go-oidc accepted the token")
	}
}

func idpTokenHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	part, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(part)
	var h map[string]any
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	return h
}

func TestIdPRotateKey(t *testing.T) {
	idp := newTestIdP(t)
	rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	oldTok, _ := rp.exchange(t, rp.authorize(t))
	oldKid := idpJWKS(t, idp)
	idp.RotateKey()
	newKid := idpJWKS(t, idp)
	if newKid == oldKid {
		t.Fatalf("kid unchanged after rotation: %q", newKid)
	}
	// The same verifier, which cached the old key, fetches the new one on an unknown kid.
	_, idt := rp.exchange(t, rp.authorize(t))
	if idt.Subject != "alice-sub" {
		t.Errorf("sub: got %q, want alice-sub", idt.Subject)
	}
	if _, err := rp.verifier.Verify(rp.ctx, oldTok.Extra("id_token").(string)); err == nil {
		t.Error("a token signed with the retired key still verifies")
	}
}

// idpJWKS returns the kid of the only key the provider publishes.
func idpJWKS(t *testing.T, idp *testIdP) string {
	t.Helper()
	resp, err := http.Get(idp.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid, Alg, Kty string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].Alg != "RS256" || set.Keys[0].Kty != "RSA" {
		t.Fatalf("jwks: got %+v, want one RS256 RSA key", set.Keys)
	}
	return set.Keys[0].Kid
}

func TestIdPDown(t *testing.T) {
	idp := newTestIdP(t)
	idp.Down(true)
	for _, path := range []string{"/.well-known/openid-configuration", "/jwks", "/authorize", "/token", "/userinfo"} {
		resp, err := http.Get(idp.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s while down: got %d, want 503", path, resp.StatusCode)
		}
	}
	if _, err := oidc.NewProvider(t.Context(), idp.URL); err == nil {
		t.Error("discovery succeeded while down")
	}
	if got := idp.TokenCalls(); got != 1 {
		t.Errorf("TokenCalls: got %d, want 1", got)
	}
	idp.Down(false)
	rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	rp.exchange(t, rp.authorize(t))
}

func TestIdPAuthorizeError(t *testing.T) {
	idp := newTestIdP(t)
	rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	idp.AuthorizeError("access_denied")
	loc := idpRedirect(t, rp.oauth2.AuthCodeURL("st", oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Has("code") || q.Get("error_description") == "" {
		t.Errorf("got %s, want error=access_denied, a description and state=st without a code", loc.Redacted())
	}
	idp.AuthorizeError("")
	rp.authorize(t)
}

func TestIdPReleasesClaimsByScope(t *testing.T) {
	idp := newTestIdP(t)
	idp.SetUser(map[string]any{"sub": "bob-sub", "email": "bob@example.com", "email_verified": false,
		"name": "Bob", "groups": []string{"ops"}})
	rp := discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	rp.oauth2.Scopes = []string{oidc.ScopeOpenID}
	tok, idt := rp.exchange(t, rp.authorize(t))
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c["sub"] != "bob-sub" || c["email"] != nil || c["name"] != nil || c["groups"] == nil {
		t.Errorf("openid scope only: got claims %v, want sub and groups without email or name", c)
	}
	ui, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != "bob-sub" || ui.Email != "" {
		t.Errorf("userinfo: got %+v, %v, want bob-sub without email", ui, err)
	}
}

// TestIdPLogin drives a minimal relying party, built from go-oidc and x/oauth2 as the gateway
// is, through the browser login helper.
func TestIdPLogin(t *testing.T) {
	idp := newTestIdP(t)
	idp.SetUser(map[string]any{"sub": "dave-sub", "email": "dave@example.com", "email_verified": true})
	var rp *idpRelyingParty
	mux := http.NewServeMux()
	mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Sec-Fetch-Mode") != "navigate" {
			http.Error(w, "not a navigation", http.StatusUnauthorized)
			return
		}
		g := idpGrant{state: idpRandom(), nonce: idpRandom(), verifier: oauth2.GenerateVerifier()}
		v := g.state + "." + g.nonce + "." + g.verifier
		http.SetCookie(w, &http.Cookie{Name: "login", Value: v, Path: "/", HttpOnly: true})
		http.Redirect(w, r, rp.oauth2.AuthCodeURL(g.state, oidc.Nonce(g.nonce), oauth2.S256ChallengeOption(g.verifier)), http.StatusFound)
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("login")
		if err != nil {
			http.Error(w, "no login cookie", http.StatusBadRequest)
			return
		}
		parts := strings.Split(c.Value, ".")
		if len(parts) != 3 || r.URL.Query().Get("state") != parts[0] {
			http.Error(w, "bad state", http.StatusBadRequest)
			return
		}
		tok, err := rp.oauth2.Exchange(rp.ctx, r.URL.Query().Get("code"), oauth2.VerifierOption(parts[2]))
		if err != nil {
			http.Error(w, "exchange failed", http.StatusUnauthorized)
			return
		}
		idt, err := rp.verifier.Verify(rp.ctx, tok.Extra("id_token").(string))
		if err != nil || idt.Nonce != parts[1] {
			http.Error(w, "bad id token", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "user", Value: idt.Subject, Path: "/"})
		http.Redirect(w, r, "/home", http.StatusFound)
	})
	mux.HandleFunc("GET /home", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("user")
		if err != nil {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s", c.Value)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rp = discoverIdP(t, idp, oauth2.AuthStyleInHeader)
	rp.oauth2.RedirectURL = srv.URL + "/callback"

	resp := idp.login(t, newBrowser(t), srv.URL+"/start")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello dave-sub" {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, "hello dave-sub")
	}
	if got := resp.Request.URL.Path; got != "/home" {
		t.Errorf("ended at %q, want /home", got)
	}
}
