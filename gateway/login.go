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
func (g *Gateway) serveStart(w http.ResponseWriter, r *http.Request) {
	rd := g.safeRedirect(r.URL.Query().Get("rd"))
	p, err := g.oidc.get(r.Context())
	if err == nil {
		err = g.oidc.reachable(r.Context())
	}
	if err != nil {
		g.metrics.logins.WithLabelValues("idp_unavailable").Inc()
		g.fail(w, r, pageIdPDown, err)
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
			Message: "headgate could not start the sign-in."}, err)
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

// Pages of the callback.
var (
	pageLoginExpired = page{Status: http.StatusBadRequest, Title: "Sign-in expired",
		Message: "This sign-in was started too long ago, in another browser, or was already used. Please start again.",
		Action:  "Sign in", ActionHref: "/oauth2/start"}
	pageLoginRefused = page{Status: http.StatusForbidden, Title: "Sign-in refused",
		Message: "The identity provider did not sign you in.",
		Action:  "Try again", ActionHref: "/oauth2/start"}
	pageLoginInvalid = page{Status: http.StatusUnauthorized, Title: "Sign-in could not be verified",
		Message: "The identity provider's answer did not pass verification, so headgate did not sign you in.",
		Action:  "Try again", ActionHref: "/oauth2/start"}
)

// serveCallback completes a sign-in: it checks the state against the login cookie, exchanges
// the code with the PKCE verifier, verifies the ID token and its nonce, links the identity to a
// Headscale user and starts the session.
func (g *Gateway) serveCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		g.metrics.logins.WithLabelValues("bad_state").Inc()
		g.fail(w, r, pageLoginExpired, errors.New("callback without state"))
		return
	}
	login, err := g.cookies.OpenLogin(r, state)
	if err != nil {
		g.metrics.logins.WithLabelValues("bad_state").Inc()
		g.fail(w, r, pageLoginExpired, err)
		return
	}
	g.cookies.ClearLogin(w, state)
	if code := q.Get("error"); code != "" {
		g.metrics.logins.WithLabelValues("idp_refused").Inc()
		p := pageLoginRefused
		p.Message = "The identity provider did not sign you in (" + oauthErrorCode(code) + ")."
		g.fail(w, r, p, errors.New("provider returned error "+oauthErrorCode(code)))
		return
	}
	first, err := g.store.Claim(ctx, "state:"+state, g.cookies.LoginTimeout())
	if err != nil {
		g.metrics.logins.WithLabelValues("store_unavailable").Inc()
		g.fail(w, r, pageStoreDown, err)
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
		g.fail(w, r, loginFailurePage(err), err)
		return
	}
	link, err := g.links.Resolve(ctx, id.identity())
	if err != nil {
		g.metrics.logins.WithLabelValues("headscale_unavailable").Inc()
		g.fail(w, r, pageHeadscaleDown, err)
		return
	}
	if link.NameShared() {
		g.metrics.logins.WithLabelValues("name_shared").Inc()
		g.fail(w, r, nameSharedPage(id.Email, link), errNameShared(link))
		return
	}
	claimed := &session.Session{Subject: id.Subject, Email: id.Email, PreferredUsername: id.PreferredUsername}
	if unsendable(claimed, link) != "" {
		g.metrics.logins.WithLabelValues("bad_identity").Inc()
		g.fail(w, r, pageBadIdentity, errBadIdentity(claimed, link))
		return
	}
	if !link.Linked() {
		g.log.LogAttrs(ctx, slog.LevelWarn, "no headscale user",
			slog.String("sub", id.Subject), slog.String("reason", link.Reason))
		if !g.anyRouteAllowsUnlinked() {
			g.metrics.logins.WithLabelValues("unlinked").Inc()
			writePage(w, r, unlinkedPage(id.Email))
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
		g.fail(w, r, page{Status: http.StatusInternalServerError, Title: "Sign-in failed",
			Message: "headgate could not create your session."}, err)
		return
	}
	g.linkAtSignIn(ctx, s, link)
	g.metrics.logins.WithLabelValues("ok").Inc()
	g.log.LogAttrs(ctx, slog.LevelInfo, "signed in",
		slog.String("sub", s.Subject), slog.String("user", link.UserName), slog.String("method", link.Method))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, g.safeRedirect(login.Redirect), http.StatusFound)
}

// unlinkedPage tells a signed-in person that no Headscale user is theirs.
func unlinkedPage(email string) page {
	who := "your account"
	if email != "" {
		who = email
	}
	return page{Status: http.StatusForbidden, Title: "No Headscale user",
		Message: "You signed in as " + who + ", but no Headscale user is linked to it. Ask an administrator to create or link your user.",
		Action:  "Sign out", ActionHref: "/oauth2/sign_out"}
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

func loginFailurePage(err error) page {
	switch {
	case errors.Is(err, errIdPUnavailable):
		return pageIdPDown
	case errors.Is(err, errExchange):
		return pageLoginExpired
	case errors.Is(err, errGroups):
		return pageGroupsUnusable
	default:
		return pageLoginInvalid
	}
}
