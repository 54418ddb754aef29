package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"headgate/linker"
	"headgate/session"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// serveStart begins a sign-in: it binds a fresh state, nonce and PKCE verifier to a sealed,
// short-lived login cookie and sends the browser to the provider.
//
// It waits for the provider (discovery, or the check that it answers) for OIDC.StartTimeout at
// most: a provider that does not answer gets a page with a button that tries again, not a
// blank tab for as long as OIDC.Timeout.
func (g *Gateway) serveStart(w http.ResponseWriter, r *http.Request) {
	rd := g.safeRedirect(r.URL.Query().Get("rd"))
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.OIDC.StartTimeout)
	defer cancel()
	p, err := g.oidc.get(ctx)
	if err == nil {
		err = g.oidc.reachable(ctx)
	}
	if err != nil {
		g.metrics.logins.WithLabelValues("idp_unavailable").Inc()
		g.fail(w, r, pageIdPDown.withAction("Try again", g.signInHref(rd)), err)
		return
	}
	// Attempts that never came back leave their login cookies behind; keep their number small.
	g.cookies.ClearStaleLogins(w, r, maxPendingLogins)
	l := &session.Login{
		State:    session.NewID(),
		Nonce:    session.NewID(),
		Verifier: oauth2.GenerateVerifier(),
		Redirect: rd,
		Created:  g.timing.Now(),
	}
	if err := g.cookies.SealLogin(w, l); err != nil {
		g.fail(w, r, page{Status: http.StatusInternalServerError, Title: "Sign-in failed",
			Message: "headgate could not start the sign-in. Please try again; if this goes on, tell an administrator.",
			Action:  "Try again", ActionHref: g.signInHref(rd)}, err)
		return
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier)}
	for k, v := range g.cfg.OIDC.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.oauth2.AuthCodeURL(l.State, opts...), http.StatusFound)
}

// serveSignIn answers with a page that sends the browser on to sign in (/oauth2/start with the
// same rd) at once, by itself, and offers a button for when it does not. It is for proxies that
// serve an error page in place of their own 401 but keep the status, such as Traefik's errors
// middleware: a browser follows no redirect on a 401, but it shows the page and obeys its
// refresh.
func (g *Gateway) serveSignIn(w http.ResponseWriter, r *http.Request) {
	p := pageSignIn
	p.ActionHref = "/oauth2/start?rd=" + url.QueryEscape(g.safeRedirect(r.URL.Query().Get("rd")))
	// Always a page: the proxy that fetches it may not pass on the browser's Accept.
	writePageAs(w, r, p, true)
}

var pageSignIn = page{Status: http.StatusOK, Title: "Sign-in required",
	Message: "You need to sign in to reach this page. Taking you to sign in…", Action: "Sign in", Refresh: true}

// maxPendingLogins is how many unfinished sign-ins a browser may have at once (one per tab).
const maxPendingLogins = 5

// Pages of the callback. Those that offer a new sign-in get their button where they are used,
// with the target the sign-in had.
var (
	pageLoginExpired = page{Status: http.StatusBadRequest, Title: "Sign-in expired",
		Message: "This sign-in was started too long ago, in another browser, or was already used. Please start again.",
		Action:  "Sign in", ActionHref: "/oauth2/start"}
	pageLoginInvalid = page{Status: http.StatusUnauthorized, Title: "Sign-in could not be verified",
		Message: "The identity provider's answer did not pass verification, so headgate did not sign you in. " +
			"Please try again; if this goes on, tell an administrator: the provider and headgate may disagree about its settings."}
)

// loginRefusedPage is the page of a sign-in the provider answered with the error code.
func loginRefusedPage(code string) page {
	return page{Status: http.StatusForbidden, Title: "Sign-in refused",
		Message: "The identity provider did not sign you in (" + code + "). " +
			"If you cancelled, try again; if the provider turned you away, ask an administrator for access."}
}

// serveCallback completes a sign-in: it checks the state against the login cookie, exchanges
// the code with the PKCE verifier, verifies the ID token and its nonce, links the identity to a
// Headscale user and starts the session.
//
// A sign-in that fails once its login is spent ends on a page a reload shows again (see
// failSignIn); one that arrives without its login, from a browser that is signed in, is told
// so rather than that it expired.
func (g *Gateway) serveCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	var login *session.Login
	err := errors.New("callback without state")
	if state != "" {
		login, err = g.cookies.OpenLogin(r, state)
	}
	if err != nil {
		g.metrics.logins.WithLabelValues("bad_state").Inc()
		if s := g.liveSession(r); s != nil {
			// Another tab's sign-in finished first, or the browser came back here again.
			g.log.LogAttrs(ctx, slog.LevelInfo, "callback of a signed-in browser without its login",
				slog.String("sub", s.Subject), slog.String("err", err.Error()))
			writePage(w, r, g.signedInPage(s))
			return
		}
		g.fail(w, r, pageLoginExpired, err)
		return
	}
	g.cookies.ClearLogin(w, state)
	again := g.signInHref(login.Redirect)
	if code := q.Get("error"); code != "" {
		g.metrics.logins.WithLabelValues("idp_refused").Inc()
		g.failSignIn(w, r, loginRefusedPage(oauthErrorCode(code)).withAction("Try again", again),
			errors.New("provider returned error "+oauthErrorCode(code)))
		return
	}
	first, err := g.store.Claim(ctx, "state:"+state, g.cookies.LoginTimeout())
	if err != nil {
		g.metrics.logins.WithLabelValues("store_unavailable").Inc()
		g.failSignIn(w, r, pageStoreDown.withAction("Try again", again), err)
		return
	}
	if !first {
		g.metrics.logins.WithLabelValues("replayed").Inc()
		g.fail(w, r, pageLoginExpired, errors.New("callback state replayed"))
		return
	}
	id, err := g.exchange(ctx, r, login)
	if err != nil {
		g.metrics.logins.WithLabelValues(loginFailureLabel(err)).Inc()
		g.failSignIn(w, r, loginFailurePage(err, again), err)
		return
	}
	noteAccess(w, nil, id.Subject, "")
	link, err := g.links.Resolve(ctx, id.identity())
	if err != nil {
		g.metrics.logins.WithLabelValues("headscale_unavailable").Inc()
		g.failSignIn(w, r, pageHeadscaleDown.withAction("Try again", again), err)
		return
	}
	if link.NameShared() {
		g.metrics.logins.WithLabelValues("name_shared").Inc()
		g.failSignIn(w, r, nameSharedPage(id.Email, link), errNameShared(link))
		return
	}
	claimed := &session.Session{Subject: id.Subject, Email: id.Email, PreferredUsername: id.PreferredUsername}
	if unsendable(claimed, link) != "" {
		g.metrics.logins.WithLabelValues("bad_identity").Inc()
		g.failSignIn(w, r, pageBadIdentity, errBadIdentity(claimed, link))
		return
	}
	if !link.Linked() {
		g.log.LogAttrs(ctx, slog.LevelWarn, "no headscale user",
			slog.String("sub", id.Subject), slog.String("reason", link.Reason), slog.String("request_id", failureID(r)))
		if !g.anyRouteAllowsUnlinked() {
			g.metrics.logins.WithLabelValues("unlinked").Inc()
			p := unlinkedPage(id.Email, link, again)
			p.RequestID = failureID(r)
			g.showSignInFailure(w, r, p)
			return
		}
	}
	now := g.timing.Now()
	s := &session.Session{
		ID:                session.NewID(),
		Issuer:            id.Issuer,
		Subject:           id.Subject,
		Email:             id.Email,
		EmailVerified:     id.EmailVerified,
		Name:              id.Name,
		PreferredUsername: id.PreferredUsername,
		ProviderSession:   id.ProviderSession,
		Groups:            id.Groups,
		IssuedAt:          now,
		ExpiresAt:         now.Add(g.cookies.Lifetime()),
	}
	if err := g.store.Create(ctx, s); err != nil {
		g.metrics.logins.WithLabelValues("store_unavailable").Inc()
		g.fail(w, r, pageStoreDown, err)
		return
	}
	if err := g.cookies.Seal(w, s); err != nil {
		g.failSignIn(w, r, page{Status: http.StatusInternalServerError, Title: "Sign-in failed",
			Message: "headgate could not create your session. Please try again; if this goes on, tell an administrator.",
			Action:  "Try again", ActionHref: again}, err)
		return
	}
	g.keepIDToken(w, r, id.rawIDToken, s.ExpiresAt)
	g.clearFailure(w, r)
	noteAccess(w, nil, s.Subject, link.UserName)
	g.linkAtSignIn(ctx, s, link)
	g.metrics.logins.WithLabelValues("ok").Inc()
	g.log.LogAttrs(ctx, slog.LevelInfo, "signed in",
		slog.String("sub", s.Subject), slog.String("user", link.UserName), slog.String("method", link.Method))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, g.safeRedirect(login.Redirect), http.StatusFound)
}

// oauthErrorCode returns the provider's error code when it is the token the protocol allows,
// so it can be shown and logged safely.
func oauthErrorCode(code string) string {
	if len(code) > 64 {
		return "invalid_error_code"
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "invalid_error_code"
		}
	}
	return code
}

// identity is what a verified ID token says about the person signing in.
type identity struct {
	Issuer, Subject, Email  string
	EmailVerified           bool
	Name, PreferredUsername string
	// ProviderSession is the provider's session (the sid claim), for back-channel logout.
	ProviderSession string
	// Groups are the person's groups at the provider (oidc.groups_claim), sorted.
	Groups []string
	// rawIDToken is the ID token as the provider issued it, for the id_token_hint of a
	// sign-out at the provider.
	rawIDToken string
}

func (id identity) identity() linker.Identity {
	return linker.Identity{Issuer: id.Issuer, Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified,
		PreferredUsername: id.PreferredUsername}
}

// Errors of the code exchange, told apart for the page and the metric.
var (
	errExchange = errors.New("code exchange refused")
	errToken    = errors.New("id token invalid")
	errGroups   = errors.New("groups claim unusable")
)

// exchange trades the code for tokens and verifies the ID token against the login it belongs to.
func (g *Gateway) exchange(ctx context.Context, r *http.Request, login *session.Login) (identity, error) {
	p, err := g.oidc.get(ctx)
	if err != nil {
		return identity{}, err
	}
	octx := g.oidc.context(ctx)
	tok, err := p.oauth2.Exchange(octx, r.URL.Query().Get("code"), oauth2.VerifierOption(login.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return identity{}, errors.Join(errExchange, errors.New("token endpoint: "+oauthErrorCode(re.ErrorCode)))
		}
		return identity{}, errors.Join(errIdPUnavailable, errors.New("token endpoint unreachable"))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity{}, errors.Join(errToken, errors.New("no id_token in token response"))
	}
	idt, err := p.verifier.Verify(octx, raw)
	if err != nil {
		return identity{}, errors.Join(errToken, err)
	}
	if idt.Nonce != login.Nonce {
		return identity{}, errors.Join(errToken, errors.New("nonce mismatch"))
	}
	var claims struct {
		Email             string   `json:"email"`
		EmailVerified     jsonBool `json:"email_verified"`
		Name              string   `json:"name"`
		PreferredUsername string   `json:"preferred_username"`
		SessionID         string   `json:"sid"`
	}
	if err := idt.Claims(&claims); err != nil {
		return identity{}, errors.Join(errToken, err)
	}
	id := identity{
		Issuer:            idt.Issuer,
		Subject:           idt.Subject,
		Email:             claims.Email,
		EmailVerified:     bool(claims.EmailVerified),
		Name:              claims.Name,
		PreferredUsername: claims.PreferredUsername,
		ProviderSession:   claims.SessionID,
		rawIDToken:        raw,
	}
	if id.Subject == "" {
		return identity{}, errors.Join(errToken, errors.New("id token without sub"))
	}
	groupsClaim := g.cfg.OIDC.GroupsClaim
	var all map[string]json.RawMessage
	present := false
	if groupsClaim != noGroups {
		if err := idt.Claims(&all); err != nil {
			return identity{}, errors.Join(errToken, err)
		}
		if id.Groups, present, err = claimGroups(all, groupsClaim); err != nil {
			return identity{}, errors.Join(errGroups, err)
		}
	}
	if (id.Email == "" || groupsClaim != noGroups && !present) && p.provider.UserInfoEndpoint() != "" {
		// Some providers keep the email or the groups out of the ID token; the userinfo
		// endpoint has them.
		if ui, err := p.provider.UserInfo(octx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == id.Subject {
			if id.Email == "" {
				id.Email, id.EmailVerified = ui.Email, ui.EmailVerified
			}
			if groupsClaim != noGroups && !present && ui.Claims(&all) == nil {
				if id.Groups, _, err = claimGroups(all, groupsClaim); err != nil {
					return identity{}, errors.Join(errGroups, err)
				}
			}
		}
	}
	return id, nil
}

// noGroups is the oidc.groups_claim that reads no groups.
const noGroups = "-"

// jsonBool accepts true and "true": some providers send email_verified as a string.
type jsonBool bool

func (b *jsonBool) UnmarshalJSON(data []byte) error {
	s := strings.Trim(string(data), `"`)
	*b = jsonBool(s == "true")
	return nil
}

func loginFailureLabel(err error) string {
	switch {
	case errors.Is(err, errIdPUnavailable):
		return "idp_unavailable"
	case errors.Is(err, errExchange):
		return "code_refused"
	case errors.Is(err, errGroups):
		return "groups_unusable"
	default:
		return "token_invalid"
	}
}

// loginFailurePage is the page of a sign-in whose exchange failed with err; again is where a
// new sign-in starts.
func loginFailurePage(err error, again string) page {
	switch {
	case errors.Is(err, errIdPUnavailable):
		return pageIdPDown.withAction("Try again", again)
	case errors.Is(err, errExchange):
		return pageLoginExpired.withAction("Sign in", again)
	case errors.Is(err, errGroups):
		return pageGroupsUnusable
	default:
		return pageLoginInvalid.withAction("Try again", again)
	}
}
