package gateway

import (
	"errors"
	"net/http"
	"time"

	"headgate/session"
)

// With oidc.sign_out_at_provider, the ID token a session was signed in with is kept in a
// cookie of its own (session.Cookies.SealIDToken) and sent as the id_token_hint of the sign-out
// at the provider: some providers (Ory Hydra) refuse a post_logout_redirect_uri without it.
// Only the sign-out opens that cookie; it is one of headgate's own cookies, so no upstream
// receives it.

// keepIDToken keeps raw, the ID token of a session that ends at expires, for the sign-out at
// the provider. Without sign_out_at_provider it keeps nothing, and clears what an earlier
// session left. A token too large for a cookie is not kept: its sign-out goes without the hint.
func (g *Gateway) keepIDToken(w http.ResponseWriter, r *http.Request, raw string, expires time.Time) {
	if !g.cfg.OIDC.SignOutAtProvider || raw == "" {
		g.cookies.ClearIDToken(w, r)
		return
	}
	err := g.cookies.SealIDToken(w, raw, expires)
	switch {
	case err == nil:
	case errors.Is(err, session.ErrTooLarge):
		g.bigIDTokenOnce.Do(func() {
			g.log.Warn("id token too large for a cookie: sign-outs at the provider go without id_token_hint", "err", err)
		})
		g.cookies.ClearIDToken(w, r)
	default:
		g.log.Warn("id token not kept for the sign-out at the provider", "err", err)
		g.cookies.ClearIDToken(w, r)
	}
}

// idTokenHint returns the ID token r's session was signed in with, or "" when it has none or
// the provider is not signed out of.
func (g *Gateway) idTokenHint(r *http.Request) string {
	if !g.cfg.OIDC.SignOutAtProvider {
		return ""
	}
	raw, err := g.cookies.OpenIDToken(r)
	if err != nil {
		return ""
	}
	return raw
}

// clearSession expires the session cookie and, when r carries it, the ID-token cookie.
func (g *Gateway) clearSession(w http.ResponseWriter, r *http.Request) {
	g.cookies.Clear(w)
	g.cookies.ClearIDToken(w, r)
}
