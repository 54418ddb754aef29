package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// headscaleGroups are the linked user's groups in Headscale's policy.
	headscaleGroups []string
	// assertion is the signed identity assertion for the request's route, or "".
	assertion string
	// device is the tailnet device whose owner this is, for a request on the tailnet
	// listener; nil for a sign-in's session. Its session then stands for the device: never
	// stored, and checked against the device (see tailnetHandler.recheck).
	device *Device
}

// subject is the subject of p's session, or "" when p has none.
func (p principal) subject() string {
	if p.session == nil {
		return ""
	}
	return p.session.Subject
}

// authResult says why authenticate did or did not prove an identity.
type authResult int

const (
	authOK          authResult = iota
	authNone                   // no usable session: sign in
	authUnlinked               // signed in, but no Headscale user and unlinked: deny
	authNameShared             // signed in, but another Headscale user has the same name
	authBadIdentity            // signed in, but a value of the identity cannot go in a header
	authUnavailable            // the link cannot be resolved right now
	authNotAllowed             // signed in and linked, but the route's access rules leave the person out
	// On the tailnet listener:
	authSignInRequired    // the route requires the identity provider's sign-in
	authDeviceUnknown     // the control server knows no device at the peer's address
	authDeviceUnavailable // the control server's word on the device could not be had
	authDeviceTagged      // the device is tagged: it belongs to no person
	authDeviceExpired     // the device's key has expired

	authResults // how many there are
)

// authenticate proves the request's identity from its session cookie. It costs no network
// round trip once this instance has seen the session and its link: the cookie is opened in
// process, the store answers from its local view (kept current by revocation messages), and
// the linker from its in-process cache. When the store cannot answer, a session whose cookie
// verifies is still served: it was proven at sign-in, and availability fails soft.
//
// The identity must also satisfy the rules of the route rt and of every route in also (see
// routeTable.match): whether a person without a Headscale user may pass, and who may.
//
// authenticate only decides: it writes nothing. Every caller answers anything but authOK with
// refuse, which also clears a cookie that is no longer good.
func (g *Gateway) authenticate(r *http.Request, rt *route, also []*route) (principal, authResult, error) {
	s, err := g.cookies.Open(r)
	if err != nil {
		return principal{}, authNone, err
	}
	if err := g.store.Check(r.Context(), s); err != nil {
		if !errors.Is(err, session.ErrUnavailable) {
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
	if link.Linked() && g.groups != nil {
		p.headscaleGroups = g.groups.Groups(link.UserID)
	}
	switch {
	case link.NameShared():
		return p, authNameShared, nil
	case unsendable(s, link) != "":
		return p, authBadIdentity, nil
	case !link.Linked() && !allowUnlinked(rt, also):
		return p, authUnlinked, nil
	case !allowed(p, rt, also):
		return p, authNotAllowed, nil
	}
	return p, authOK, nil
}

// allowUnlinked reports whether rt and every route in also let in a person without a Headscale
// user.
func allowUnlinked(rt *route, also []*route) bool {
	for _, r := range also {
		if !r.allowUnlinked {
			return false
		}
	}
	return rt.allowUnlinked
}

// allowed reports whether the access rules of rt and of every route in also let p in.
func allowed(p principal, rt *route, also []*route) bool {
	if rt.access.any && len(also) == 0 {
		return true
	}
	w := who{groups: p.session.Groups, headscaleUser: p.link.UserName, headscaleGroups: p.headscaleGroups}
	if p.session.EmailVerified {
		w.email = p.session.Email
	}
	for _, r := range also {
		if !r.access.allows(w) {
			return false
		}
	}
	return rt.access.allows(w)
}

// dropBadCookie clears the session cookie of a request that authenticate answered authNone
// with err, unless the request simply had none. A cookie that does not open, or whose session
// was revoked or expired, is removed so the browser stops sending it.
func (g *Gateway) dropBadCookie(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case err == nil, errors.Is(err, session.ErrNoSession):
		return
	case errors.Is(err, session.ErrAmbiguous):
		g.log.Warn("session cookies of two sessions, neither used", "path", r.URL.Path, "err", err)
	}
	g.clearSession(w, r)
}

// denyUnauthenticated answers a request without a proven identity: a browser loading a page is
// sent to sign in and comes back here afterwards; anything else gets 401, whose page offers to
// sign in.
func (g *Gateway) denyUnauthenticated(w http.ResponseWriter, r *http.Request) {
	if isNavigation(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/oauth2/start?rd="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	writePage(w, r, unauthorizedPage(g.signInHref(g.againHref(r))))
}

// forwardAuthSignIn is where the "Sign in" button of a forward-auth check's 401 page goes. A
// proxy may show that page on the application's own host (Traefik's forwardAuth passes it on),
// so the address is absolute, and the sign-in returns to the request the trusted proxy names.
func (g *Gateway) forwardAuthSignIn(r *http.Request) string {
	rd := ""
	if host, uri, ok := g.checkedRequest(r); ok && strings.HasPrefix(uri, "/") {
		proto := r.Header.Get("X-Forwarded-Proto")
		if proto != "http" && proto != "https" {
			proto = g.public.Scheme
		}
		rd = proto + "://" + host + uri
	}
	return g.origin + g.signInHref(rd)
}

// serveAuth answers forward-auth checks: 202 with the identity headers for a proven identity,
// 401 without one, 403 for a signed-in person without a Headscale user (unlinked: deny) or
// whose Headscale user's name another user has too.
//
// The 202 also carries X-Auth-Request-Cookie: the request's cookies without headgate's own, for
// a proxy to send as the upstream's Cookie (nginx cannot remove one cookie of several by
// itself). It is absent when no other cookie is left.
func (g *Gateway) serveAuth(w http.ResponseWriter, r *http.Request) {
	rt, also := g.forwardedRoute(r)
	p, res, err := g.authenticate(r, rt, also)
	noteAccess(w, rt, p.subject(), p.link.UserName)
	if res != authOK {
		g.refuse(w, r, p, res, err, rt, false)
		return
	}
	if g.asserter != nil {
		if p.assertion, err = g.assert(p, rt); err != nil {
			g.fail(w, r, pageAssertionDown, err)
			return
		}
	}
	setIdentityHeaders(w.Header(), p, rt, true)
	if c := g.cookiesForUpstream(r.Header); c != "" {
		w.Header().Set(headerAuthRequestCookie, c)
		// Under its own name too, for Traefik, whose forwardAuth copies headers by name only.
		w.Header().Set("Cookie", c)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
}

// headerAuthRequestCookie carries, on a forward-auth answer, the cookies the upstream may see.
const headerAuthRequestCookie = "X-Auth-Request-Cookie"

// cookiesForUpstream returns the Cookie lines of h without headgate's own cookies, joined into
// one value, or "". The other cookies keep their order and bytes. h is not changed.
func (g *Gateway) cookiesForUpstream(h http.Header) string {
	c := http.Header{"Cookie": h["Cookie"]}
	g.cookies.StripOwn(c)
	var lines []string
	for _, line := range c["Cookie"] {
		if line = strings.Trim(line, " \t;"); line != "" {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "; ")
}

// refuse answers a request whose identity authenticate did not prove (res is not authOK) and
// counts it. It is the one deny decision of the proxy, forward auth and /oauth2/userinfo.
// Without a session, a browser loading a page is sent to sign in when signIn is set;
// everything else gets 401.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, p principal, res authResult, err error, rt *route, signIn bool) {
	g.metrics.denied[res].Inc()
	switch res {
	case authNone:
		g.dropBadCookie(w, r, err)
		switch {
		case signIn:
			g.denyUnauthenticated(w, r)
		case r.URL.Path == "/oauth2/auth":
			writePage(w, r, unauthorizedPage(g.forwardAuthSignIn(r)))
		default:
			writePage(w, r, unauthorizedPage(g.signInHref(g.againHref(r))))
		}
	case authUnlinked:
		g.fail(w, r, unlinkedPage(p.session.Email, p.link, g.signInHref(g.againHref(r))), errors.New("no headscale user: "+p.link.Reason))
	case authNameShared:
		g.fail(w, r, nameSharedPage(p.session.Email, p.link), errNameShared(p.link))
	case authBadIdentity:
		g.fail(w, r, pageBadIdentity, errBadIdentity(p.session, p.link))
	case authUnavailable:
		g.fail(w, r, pageHeadscaleDown.withAction("Try again", g.againHref(r)), err)
	case authNotAllowed:
		g.fail(w, r, notAllowedPage(p.session.Email, rt.access.lacks()),
			fmt.Errorf("not allowed on route %s: sub %s, headscale user %q", rt.name, p.session.Subject, p.link.UserName))
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

// serveUserInfo describes the signed-in person as JSON. It refuses whom /oauth2/auth refuses,
// with the same status: 401 without a session, 403 for a person headgate does not let through.
func (g *Gateway) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	rt, also := g.table.matchURL(r.Host, r.URL)
	if rt == nil {
		rt = g.base
	}
	p, res, err := g.authenticate(r, rt, also)
	noteAccess(w, nil, p.subject(), p.link.UserName)
	if res != authOK {
		g.refuse(w, r, p, res, err, rt, false)
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
	writePage(w, r, pageNotFound.withAction("Go to the application", g.home()))
}

// errNameShared is the logged cause of a refusal for a shared name: it names the users, for the
// administrator who must rename one of them.
func errNameShared(link linker.Link) error {
	return fmt.Errorf("headscale user %s shares its name %q with user(s) %s: rename one of them",
		link.UserID, link.UserName, strings.Join(link.NameSharedWith, ", "))
}

// nameSharedPage tells a signed-in person that their Headscale user's name is not theirs alone.
// It does not name the other users.
func nameSharedPage(email string, link linker.Link) page {
	who := signedInAs(email)
	return page{Status: http.StatusForbidden, Title: "Your Headscale user name is not unique",
		Message: "You signed in as " + who + ", whose Headscale user is \u201c" + link.UserName + "\u201d, but another Headscale user has the same name, " +
			"so the applications behind headgate could not tell you apart. Ask an administrator to rename one of the two users.",
		Action: "Sign out", ActionHref: "/oauth2/sign_out"}
}

// unsendable names the first value of the identity headgate would send that cannot be an HTTP
// header value (a control character such as CR or LF, or DEL), or returns "". Go's transport
// would refuse the whole request, so such an identity is refused with a page of its own.
func unsendable(s *session.Session, link linker.Link) string {
	for _, v := range []struct{ field, value string }{
		{"headscale user name", link.UserName}, {"headscale user id", link.UserID},
		{"email", s.Email}, {"preferred_username", s.PreferredUsername},
	} {
		for i := 0; i < len(v.value); i++ {
			if c := v.value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return v.field
			}
		}
	}
	return ""
}

// errBadIdentity is the logged cause of a refusal for an identity that cannot be sent. It names
// the field, not its value.
func errBadIdentity(s *session.Session, link linker.Link) error {
	who := "subject " + s.Subject
	if link.Linked() {
		who = "headscale user " + link.UserID
	}
	return fmt.Errorf("the %s of %s holds a control character and cannot be sent in a header: correct it at the identity provider or in Headscale",
		unsendable(s, link), who)
}

var pageBadIdentity = page{Status: http.StatusForbidden, Title: "Your identity cannot be passed on",
	Message: "Your name or email, as your identity provider or Headscale states it, holds characters that cannot be sent to the application, " +
		"so headgate cannot tell it who you are. Ask an administrator to correct it.",
	Action: "Sign out", ActionHref: "/oauth2/sign_out"}
