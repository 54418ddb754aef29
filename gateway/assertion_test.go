package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

func newTestKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKeys makes n keys that never rotate.
func testKeys(t testing.TB, n int) *assertionKeys {
	t.Helper()
	var keys []*ecdsa.PrivateKey
	for range n {
		keys = append(keys, newTestKey(t))
	}
	ks, err := newAssertionKeys(keys, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestAssertionVerifies: an upstream verifies an assertion with a standard library (go-oidc)
// and the published keys, reads the person from it, and refuses it for another audience.
func TestAssertionVerifies(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	retiring, current := newTestKey(t), newTestKey(t)
	keys, err := newAssertionKeys([]*ecdsa.PrivateKey{current, retiring}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	a := newAsserter("https://gate.example.com/oauth2", 5*time.Minute, func() time.Time { return now }, keys)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(keys.jwks, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("key set: %s, %v", keys.jwks, err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" || k.Algorithm != "ES256" {
			t.Errorf("published key %+v: want a public ES256 key with an ID", k)
		}
	}
	token, err := a.assertion("sess-1", "https://grafana.example.com", assertionClaims{
		Subject: "alice-sub", Email: "alice@example.com", HeadscaleUser: "alice", HeadscaleUserID: "1",
		Groups: []string{"dev", "ops, infra"}, HeadscaleGroups: []string{"group:admins"},
	})
	if err != nil {
		t.Fatal(err)
	}
	published := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&current.PublicKey}}
	verifier := func(aud string) *oidc.IDTokenVerifier {
		return oidc.NewVerifier("https://gate.example.com/oauth2", published, &oidc.Config{
			ClientID: aud, SupportedSigningAlgs: []string{"ES256"}, Now: func() time.Time { return now.Add(time.Minute) }})
	}
	tok, err := verifier("https://grafana.example.com").Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims struct {
		Email           string   `json:"email"`
		EmailVerified   bool     `json:"email_verified"`
		HeadscaleUser   string   `json:"headscale_user"`
		HeadscaleUserID string   `json:"headscale_user_id"`
		Groups          []string `json:"groups"`
		HeadscaleGroups []string `json:"headscale_groups"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if tok.Subject != "alice-sub" || claims.Email != "alice@example.com" || !claims.EmailVerified ||
		claims.HeadscaleUser != "alice" || claims.HeadscaleUserID != "1" ||
		!slices.Equal(claims.Groups, []string{"dev", "ops, infra"}) || !slices.Equal(claims.HeadscaleGroups, []string{"group:admins"}) {
		t.Errorf("claims: got %s %+v", tok.Subject, claims)
	}
	if !tok.Expiry.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("expiry: got %v, want %v", tok.Expiry, now.Add(5*time.Minute))
	}
	if _, err := verifier("https://gitea.example.com").Verify(context.Background(), token); err == nil {
		t.Error("an assertion for Grafana verified for Gitea")
	}
	other := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&retiring.PublicKey}}
	if _, err := oidc.NewVerifier("https://gate.example.com/oauth2", other, &oidc.Config{ClientID: "https://grafana.example.com",
		Now: func() time.Time { return now }}).Verify(context.Background(), token); err == nil {
		t.Error("an assertion verified with a key that did not sign it")
	}
}

// TestAssertionReused: an assertion is signed once per session and audience, and signed again
// when it nears expiry, when what it says changes, and for another session or audience.
func TestAssertionReused(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := newAsserter("https://gate.example.com/oauth2", 5*time.Minute, func() time.Time { return now }, testKeys(t, 1))
	alice := assertionClaims{Subject: "alice-sub", HeadscaleUser: "alice", HeadscaleUserID: "1"}
	get := func(session, aud string, c assertionClaims) string {
		t.Helper()
		tok, err := a.assertion(session, aud, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := get("s1", "aud", alice)
	now = now.Add(3*time.Minute + 59*time.Second)
	if get("s1", "aud", alice) != first {
		t.Error("signed again with over a fifth of its life left")
	}
	if get("s2", "aud", alice) == first || get("s1", "other", alice) == first {
		t.Error("reused for another session or audience")
	}
	renamed := alice
	renamed.HeadscaleUser = "alice2"
	second := get("s1", "aud", renamed)
	if second == first {
		t.Error("reused after the person's Headscale name changed")
	}
	now = now.Add(4 * time.Minute) // a fifth of the second one's life is left
	if get("s1", "aud", renamed) == second {
		t.Error("reused with a fifth of its life left")
	}
}

func TestParseSigningKey(t *testing.T) {
	k := newTestKey(t)
	sec1, _ := x509.MarshalECPrivateKey(k)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	for name, data := range map[string][]byte{
		"EC PRIVATE KEY": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"PRIVATE KEY":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		got, err := parseSigningKey(data)
		if err != nil || !got.Equal(k) {
			t.Errorf("%s: got %v, %v", name, got, err)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsader, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	for name, data := range map[string][]byte{
		"empty":   nil,
		"P-384":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384der}),
		"RSA":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsader}),
		"public":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}),
		"garbage": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}),
	} {
		if _, err := parseSigningKey(data); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), string(sec1)) {
			t.Errorf("%s: the error shows key material", name)
		}
	}
}

// TestAssertionDiscovery: an upstream that knows only headgate's issuer URL finds the keys the
// way any OpenID Connect library does and verifies an assertion, as the README shows.
func TestAssertionDiscovery(t *testing.T) {
	var a *asserter
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+assertionIssuerPath+assertionDiscoveryPath, func(w http.ResponseWriter, r *http.Request) { a.serveDiscovery(w, r) })
	mux.HandleFunc("GET "+assertionIssuerPath+assertionKeysPath, func(w http.ResponseWriter, r *http.Request) { a.serveKeys(w, r) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a = newAsserter(srv.URL+assertionIssuerPath, 5*time.Minute, time.Now, testKeys(t, 2))
	token, err := a.assertion("s", "https://grafana.example.com", assertionClaims{Subject: "alice-sub", HeadscaleUser: "alice"})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, srv.URL+"/oauth2")
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "https://grafana.example.com"}).Verify(ctx, token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims struct {
		HeadscaleUser string `json:"headscale_user"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Subject != "alice-sub" || claims.HeadscaleUser != "alice" {
		t.Errorf("got %q %+v %v", idt.Subject, claims, err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "https://gitea.example.com"}).Verify(ctx, token); err == nil {
		t.Error("verified for another audience")
	}
	tampered := token[:len(token)-4] + "AAAA"
	if _, err := provider.Verifier(&oidc.Config{ClientID: "https://grafana.example.com"}).Verify(ctx, tampered); err == nil {
		t.Error("a tampered assertion verified")
	}
}
