package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// Signing out: of headgate on every instance, and, with oidc.sign_out_at_provider, of the
// identity provider too (OpenID Connect RP-Initiated Logout). The provider's own sign-outs
// reach headgate through back-channel logout (backchannel.go).

// serveSignOut ends the session on every instance, clears the cookie and returns the browser to
// rd (a safe target) or to the signed-out page. A React Router data request (Headplane's
// Logout) is answered with a redirect its client follows to the same place.
//
// A sign-out that another site started is only asked to be confirmed: a link, redirect or image
// on any page could otherwise sign people out (the session cookie is SameSite=Lax, so a browser
// sends it on a top-level GET from anywhere). Browsers say where a request comes from in
// Sec-Fetch-Site; a GET marked cross-site, and a POST that Go's CrossOriginProtection judges
// cross-origin, get a page whose button posts the sign-out from headgate's own origin. Clients
// that are not browsers send neither header and are not affected.
func (g *Gateway) serveSignOut(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" || g.crossOrigin.Check(r) != nil {
		confirm := pageConfirmSignOut
		if rd := r.FormValue("rd"); rd != "" {
			confirm.ActionHref += "?rd=" + url.QueryEscape(g.safeRedirect(rd))
		}
		writePage(w, r, confirm)
		return
	}
	if s, err := g.cookies.Open(r); err == nil {
		noteAccess(w, nil, s.Subject, "")
		if err := g.store.Revoke(r.Context(), s); err != nil {
			// The session is revoked on this instance at once; the store retries the rest when it
			// answers again.
			g.log.Warn("sign-out not yet shared with other instances", "sub", s.Subject, "err", err)
		} else {
			g.log.Info("signed out", "sub", s.Subject)
		}
	}
	hint := g.idTokenHint(r)
	g.clearSession(w, r)
	rd := r.FormValue("rd")
	end := g.providerSignOut(r.Context(), rd, hint)
	if _, ok := g.dataRequest(r); ok {
		// Headplane's Logout: its client follows only a React Router redirect.
		if end == "" {
			end = "/oauth2/signed_out"
			if rd != "" {
				end += "?state=" + url.QueryEscape(g.safeRedirect(rd))
			}
		}
		g.remixRedirect(w, r, end)
		return
	}
	if end != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, end, http.StatusFound)
		return
	}
	g.finishSignOut(w, r, rd)
}

// providerSignOut returns where to send the browser to end its session at the provider as well
// (see OIDCConfig.SignOutAtProvider), or "" to finish here: when that is not configured, the
// provider offers no end-session endpoint, or it does not answer (the person is signed out of
// headgate either way). rd travels as the state parameter, which the provider hands back to
// /oauth2/signed_out, where it is checked again. hint, the ID token the session was signed in
// with, goes as id_token_hint unless it is empty.
func (g *Gateway) providerSignOut(ctx context.Context, rd, hint string) string {
	if !g.cfg.OIDC.SignOutAtProvider {
		return ""
	}
	p, err := g.oidc.get(ctx)
	if err == nil {
		err = g.oidc.reachable(ctx)
	}
	if err != nil || p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("client_id", g.cfg.OIDC.ClientID)
	if hint != "" {
		q.Set("id_token_hint", hint)
	}
	q.Set("post_logout_redirect_uri", strings.TrimSuffix(g.public.String(), "/")+"/oauth2/signed_out")
	if rd != "" {
		q.Set("state", g.safeRedirect(rd))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// serveSignedOut is where the provider returns the browser after ending its session there.
func (g *Gateway) serveSignedOut(w http.ResponseWriter, r *http.Request) {
	g.finishSignOut(w, r, r.URL.Query().Get("state"))
}

// finishSignOut returns the browser to rd (a safe target) or shows the signed-out page.
func (g *Gateway) finishSignOut(w http.ResponseWriter, r *http.Request, rd string) {
	if rd != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, g.safeRedirect(rd), http.StatusFound)
		return
	}
	// Without a target, a page rather than "/": "/" would send the browser straight back
	// through the provider, which usually still has a session and signs the person in again.
	signedOut := pageSignedOut
	if g.hpPath != "" {
		// Back to Headplane, not to "/", which Headplane does not serve.
		signedOut.ActionHref += "?rd=" + url.QueryEscape(g.hpPath+"/")
	}
	writePage(w, r, signedOut)
}

var pageConfirmSignOut = page{Status: http.StatusOK, Title: "Sign out?",
	Message: "Another site asked to sign you out of headgate. You are still signed in.",
	Action:  "Sign out", ActionHref: "/oauth2/sign_out", ActionPost: true}

var pageSignedOut = page{Status: http.StatusOK, Title: "Signed out",
	Message: "You are signed out of headgate.", Action: "Sign in again", ActionHref: "/oauth2/start"}
