package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// maxLogoutRequest bounds the body of a back-channel logout request: one form field holding a
// signed token.
const maxLogoutRequest = 64 << 10

// serveBackchannelLogout ends the sessions an identity provider names in an OpenID Connect
// Back-Channel Logout (the provider posts a signed logout token when a person signs out there,
// is disabled, or an administrator ends their session): every session of the token's sub, or,
// when it names a sid, those begun in it (and the sub's sessions begun without a sid, which
// cannot be told apart), on every instance. The token must verify like an ID token (issuer,
// audience, signature, expiry), carry the logout event and no nonce (see verifyLogout), and
// is accepted once. The provider gets 200 when the sessions are ended, 400 for a token that
// does not verify or was seen before, and 503 when the provider's keys or the session store
// cannot be reached, as the specification asks.
func (g *Gateway) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutRequest)
	raw := r.PostFormValue("logout_token")
	if raw == "" {
		g.refuseLogout(w, r, "invalid", http.StatusBadRequest, errors.New("no logout_token"))
		return
	}
	p, err := g.oidc.get(ctx)
	if err != nil {
		g.refuseLogout(w, r, "unavailable", http.StatusServiceUnavailable, err)
		return
	}
	tok, err := g.verifyLogout(ctx, p, raw)
	if err != nil && p.logoutKeys.unreachable() {
		g.refuseLogout(w, r, "unavailable", http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		g.refuseLogout(w, r, "invalid", http.StatusBadRequest, err)
		return
	}
	// A replayed token could end sessions begun after the logout it announced; it is remembered
	// until it expires.
	jti := sha256.Sum256([]byte(tok.Issuer + "\x00" + tok.TokenID))
	first, err := g.store.Claim(ctx, "logout:"+hex.EncodeToString(jti[:16]), max(tok.Expiry.Sub(g.timing.Now()), time.Minute))
	if err != nil {
		g.refuseLogout(w, r, "unavailable", http.StatusServiceUnavailable, err)
		return
	}
	if !first {
		g.refuseLogout(w, r, "replayed", http.StatusBadRequest, errors.New("logout token replayed"))
		return
	}
	n, err := g.store.RevokeProviderSessions(ctx, tok.Issuer, tok.Subject, tok.SessionID)
	if err != nil && n == 0 {
		g.refuseLogout(w, r, "unavailable", http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		// Ended on this instance; the store shares the rest once Redis answers again.
		g.log.Warn("back-channel logout not yet shared with other instances", "sub", tok.Subject, "err", err)
	}
	g.metrics.backchannel.WithLabelValues("ok").Inc()
	g.log.LogAttrs(ctx, slog.LevelInfo, "back-channel logout",
		slog.String("sub", tok.Subject), slog.Bool("sid", tok.SessionID != ""), slog.Int("sessions", n))
	w.WriteHeader(http.StatusOK)
}

// logoutEvent is the member of a logout token's events claim that makes it one.
const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// verifyLogout checks a logout token with go-oidc's VerifyLogout. When that refuses it and
// oidc.logout_token_max_age lets in tokens without exp, a token that indeed has no exp is
// checked again: its signature, issuer and audience by go-oidc with no expiry, then the logout
// claims VerifyLogout checks, and an iat within the maximum age. Its expiry is then its iat
// plus that age, which is how long its jti is remembered.
func (g *Gateway) verifyLogout(ctx context.Context, p *oidcProvider, raw string) (*oidc.LogoutToken, error) {
	tok, err := p.logoutVerifier.VerifyLogout(ctx, raw)
	if err == nil {
		return tok, nil
	}
	if p.undatedLogoutVerifier == nil {
		if strings.Contains(err.Error(), "'exp' claim") {
			err = fmt.Errorf("%w (oidc.logout_token_max_age lets in tokens without exp)", err)
		}
		return nil, err
	}
	id, verr := p.undatedLogoutVerifier.Verify(ctx, raw)
	if verr != nil {
		return nil, verr
	}
	var claims struct {
		Expiry json.RawMessage            `json:"exp"`
		Events map[string]json.RawMessage `json:"events"`
		ID     string                     `json:"jti"`
		SID    string                     `json:"sid"`
	}
	if cerr := id.Claims(&claims); cerr != nil || claims.Expiry != nil {
		return nil, err // a token with exp was judged by VerifyLogout
	}
	maxAge := g.cfg.OIDC.LogoutTokenMaxAge
	age := g.timing.Now().Sub(id.IssuedAt)
	switch {
	case claims.Events[logoutEvent] == nil:
		return nil, errors.New("logout token without exp: no " + logoutEvent + " event")
	case id.Nonce != "":
		return nil, errors.New("logout token without exp: it has a nonce, as an ID token does")
	case claims.ID == "":
		return nil, errors.New("logout token without exp: no jti")
	case id.Subject == "" && claims.SID == "":
		return nil, errors.New("logout token without exp: neither sub nor sid")
	case id.IssuedAt.IsZero():
		return nil, errors.New("logout token without exp: no iat")
	case age > maxAge:
		return nil, fmt.Errorf("logout token without exp: issued %s ago, longer than oidc.logout_token_max_age (%s)", age.Round(time.Second), maxAge)
	case age < -time.Minute:
		return nil, fmt.Errorf("logout token without exp: issued %s ahead of headgate's clock", (-age).Round(time.Second))
	}
	return &oidc.LogoutToken{Issuer: id.Issuer, Subject: id.Subject, Audience: id.Audience, IssuedAt: id.IssuedAt,
		Expiry: id.IssuedAt.Add(maxAge), SessionID: claims.SID, TokenID: claims.ID}, nil
}

// refuseLogout answers a back-channel logout that did not end sessions, and counts it by result.
func (g *Gateway) refuseLogout(w http.ResponseWriter, r *http.Request, result string, status int, cause error) {
	g.metrics.backchannel.WithLabelValues(result).Inc()
	p := page{Status: status, Title: "Logout token refused",
		Message: "headgate did not accept this logout token, so it ended no session."}
	if status == http.StatusServiceUnavailable {
		p.Title = "Logout cannot be applied right now"
		p.Message = "headgate cannot reach what it needs to end these sessions right now. Send the token again later."
	}
	g.fail(w, r, p, cause)
}

// logoutKeys checks the signatures of back-channel logout tokens against the provider's keys.
// Anyone can post such a token, and go-oidc's remote key set fetches the provider's keys again
// after every signature that does not verify with the keys it holds; here the keys are fetched
// at most once every refresh (Timing.LogoutKeysRefresh), so forged tokens cannot make headgate
// call the provider on each request. A key the provider rotates in verifies from the first
// token after that pause.
type logoutKeys struct {
	url     string // the provider's jwks_uri
	client  *http.Client
	now     func() time.Time
	refresh time.Duration

	mu       sync.Mutex
	keys     *oidc.StaticKeySet
	fetched  time.Time
	fetchErr error // of the last fetch
}

// unreachable reports whether the last fetch of the provider's keys failed.
func (k *logoutKeys) unreachable() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetchErr != nil
}

// prefetch fetches the keys ahead of the first token, so that logouts verify while the
// provider is down.
func (k *logoutKeys) prefetch(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fetch(ctx)
}

// VerifySignature implements oidc.KeySet.
func (k *logoutKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil {
		if payload, err := k.keys.VerifySignature(ctx, jwt); err == nil {
			return payload, nil
		}
	}
	if k.now().Sub(k.fetched) < k.refresh {
		return nil, errors.New("signature does not verify with the provider's keys")
	}
	if err := k.fetch(ctx); err != nil {
		return nil, err
	}
	return k.keys.VerifySignature(ctx, jwt)
}

// fetch reads the provider's signing keys, keeping the ones it has when that fails. k.mu is
// held.
func (k *logoutKeys) fetch(ctx context.Context) error {
	k.fetched = k.now()
	k.fetchErr = k.read(ctx)
	return k.fetchErr
}

func (k *logoutKeys) read(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("fetch provider keys: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: fetch provider keys: %w", errIdPUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: fetch provider keys: %s", errIdPUnavailable, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("%w: read provider keys: %w", errIdPUnavailable, err)
	}
	keys := &oidc.StaticKeySet{}
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys.PublicKeys = append(keys.PublicKeys, key.Key)
		}
	}
	k.keys = keys
	return nil
}
