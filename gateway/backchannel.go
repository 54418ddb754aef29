package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// maxLogoutRequest bounds the body of a back-channel logout request: one form field holding a
// signed token.
const maxLogoutRequest = 64 << 10

// serveBackchannelLogout ends the sessions an identity provider names in an OpenID Connect
// Back-Channel Logout (the provider posts a signed logout token when a person signs out there,
// is disabled, or an administrator ends their session): every session of the token's sub, or
// only those begun in its sid when it names one, on every instance. The token must verify
// like an ID token (issuer, audience, signature, expiry), carry the logout event and no nonce
// (go-oidc's VerifyLogout), and is accepted once. The provider gets 200 when the sessions are
// ended, 400 for a token that does not verify or was seen before, and 503 when the provider's
// keys or the session store cannot be reached, as the specification asks.
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
	tok, err := p.verifier.VerifyLogout(g.oidc.context(ctx), raw)
	if err != nil {
		g.refuseLogout(w, r, "invalid", http.StatusBadRequest, err)
		return
	}
	// A replayed token could end sessions begun after the logout it announced; it is remembered
	// until it expires.
	jti := sha256.Sum256([]byte(tok.Issuer + "\x00" + tok.TokenID))
	first, err := g.store.Claim(ctx, "logout:"+hex.EncodeToString(jti[:16]), max(time.Until(tok.Expiry), time.Minute))
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
		slog.String("sub", tok.Subject), slog.Int("sessions", n))
	w.WriteHeader(http.StatusOK)
}

// refuseLogout answers a back-channel logout that did not end sessions, and counts it by result.
func (g *Gateway) refuseLogout(w http.ResponseWriter, r *http.Request, result string, status int, cause error) {
	g.metrics.backchannel.WithLabelValues(result).Inc()
	title := "Logout token refused"
	if status == http.StatusServiceUnavailable {
		title = "Logout cannot be applied right now"
	}
	g.fail(w, r, page{Status: status, Title: title}, cause)
}
