package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"headgate/linker"
	"headgate/session"
)

// principal is a request's proven identity: a live session and the Headscale link of its owner.
type principal struct {
	session *session.Session
	link    linker.Link
}

// authResult says why authenticate did or did not prove an identity.
type authResult int

const (
	authOK          authResult = iota
	authNone                   // no usable session: sign in
	authUnlinked               // signed in, but no Headscale user and unlinked: deny
	authUnavailable            // the link cannot be resolved right now
)

// authenticate proves the request's identity from its session cookie. It costs no network
// round trip once this instance has seen the session and its link: the cookie is opened in
// process, the store answers from its local view (kept current by revocation messages), and
// the linker from its in-process cache. When the store cannot answer, a session whose cookie
// verifies is still served: it was proven at sign-in, and availability fails soft.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (principal, authResult, error) {
	s, err := g.cookies.Open(r)
	if err != nil {
		if !errors.Is(err, session.ErrNoSession) {
			g.cookies.Clear(w)
		}
		return principal{}, authNone, err
	}
	if err := g.store.Check(r.Context(), s); err != nil {
		if !errors.Is(err, session.ErrUnavailable) {
			g.cookies.Clear(w)
			return principal{}, authNone, err
		}
		g.metrics.storeFailSoft.Inc()
	}
	link, err := g.links.Resolve(r.Context(), linker.Identity{
		Issuer: s.Issuer, Subject: s.Subject, Email: s.Email, EmailVerified: s.EmailVerified,
		PreferredUsername: s.PreferredUsername,
	})
	if err != nil {
		return principal{session: s}, authUnavailable, err
	}
	p := principal{session: s, link: link}
	if !link.Linked() && !g.links.AllowUnlinked() {
		return p, authUnlinked, nil
	}
	return p, authOK, nil
}

// denyUnauthenticated answers a request without a proven identity: a browser loading a page is
// sent to sign in and comes back here afterwards; anything else gets 401.
func (g *Gateway) denyUnauthenticated(w http.ResponseWriter, r *http.Request) {
	if isNavigation(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/oauth2/start?rd="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	writePage(w, r, pageUnauthorized)
}

// serveAuth answers forward-auth checks: 202 with the identity headers for a proven identity,
// 401 without one, 403 for a signed-in person without a Headscale user (unlinked: deny).
func (g *Gateway) serveAuth(w http.ResponseWriter, r *http.Request) {
	p, res, err := g.authenticate(w, r)
	if res != authOK {
		g.refuse(w, r, p, res, err, false)
		return
	}
	setIdentityHeaders(w.Header(), p, true)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
}

// refuse answers a request whose identity authenticate did not prove (res is not authOK) and
// counts it. Without a session, a browser loading a page is sent to sign in when signIn is
// set; everything else gets 401.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, p principal, res authResult, err error, signIn bool) {
	g.metrics.denied[res].Inc()
	switch res {
	case authNone:
		if signIn {
			g.denyUnauthenticated(w, r)
		} else {
			writePage(w, r, pageUnauthorized)
		}
	case authUnlinked:
		g.fail(w, r, unlinkedPage(p.session.Email), errors.New("no headscale user: "+p.link.Reason))
	case authUnavailable:
		g.fail(w, r, pageHeadscaleDown, err)
	}
}

// userInfo is the JSON body of /oauth2/userinfo.
type userInfo struct {
	User              string `json:"user"`
	Email             string `json:"email,omitempty"`
	PreferredUsername string `json:"preferredUsername,omitempty"`
	HeadscaleUser     string `json:"headscaleUser,omitempty"`
	HeadscaleUserID   string `json:"headscaleUserId,omitempty"`
	ExpiresAt         string `json:"expiresAt"`
}

// serveUserInfo describes the signed-in person as JSON, or answers 401.
func (g *Gateway) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	p, res, err := g.authenticate(w, r)
	switch res {
	case authNone:
		writePage(w, r, pageUnauthorized)
		return
	case authUnavailable:
		g.fail(w, r, pageHeadscaleDown, err)
		return
	}
	info := userInfo{
		User:              p.session.Subject,
		Email:             p.session.Email,
		PreferredUsername: p.session.PreferredUsername,
		HeadscaleUser:     p.link.UserName,
		HeadscaleUserID:   p.link.UserID,
		ExpiresAt:         p.session.ExpiresAt.UTC().Format(time.RFC3339),
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(info)
}

// serveSignOut ends the session on every instance, clears the cookie and returns the browser to
// rd (a safe target) or to "/".
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
		if err := g.store.Revoke(r.Context(), s); err != nil {
			// The session is revoked on this instance at once; the store retries the rest when it
			// answers again.
			g.log.Warn("sign-out not yet shared with other instances", "sub", s.Subject, "err", err)
		} else {
			g.log.Info("signed out", "sub", s.Subject)
		}
	}
	g.cookies.Clear(w)
	rd := r.FormValue("rd")
	if end := g.providerSignOut(r.Context(), rd); end != "" {
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
// /oauth2/signed_out, where it is checked again.
func (g *Gateway) providerSignOut(ctx context.Context, rd string) string {
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
	writePage(w, r, pageSignedOut)
}

var pageConfirmSignOut = page{Status: http.StatusOK, Title: "Sign out?",
	Message: "Another site asked to sign you out of headgate. You are still signed in.",
	Action:  "Sign out", ActionHref: "/oauth2/sign_out", ActionPost: true}

var pageSignedOut = page{Status: http.StatusOK, Title: "Signed out",
	Message: "You are signed out of headgate.", Action: "Sign in again", ActionHref: "/oauth2/start"}

func (g *Gateway) servePing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("OK\n"))
}

// serveReady reports whether the session store answers, for load balancers.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := g.store.Ping(ctx); err != nil {
		g.log.Warn("not ready", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("session store unavailable\n"))
		return
	}
	w.Write([]byte("OK\n"))
}

func (g *Gateway) serveNotFound(w http.ResponseWriter, r *http.Request) {
	writePage(w, r, pageNotFound)
}
