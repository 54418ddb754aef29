package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"headgate/session"
)

// A sign-in that ends on a page at the callback would leave /oauth2/callback?code=... in the
// address bar, and reloading it would present a spent code and state: the page would then
// claim that the sign-in expired. So the callback shows such a page the way a form's answer is
// shown (post, redirect, get): it seals the page into a short-lived cookie of its own and sends
// the browser to /oauth2/sign_in_failed, which shows the same page on every reload until the
// cookie expires, after session.login_timeout.

const (
	// failurePath shows the page of the sign-in that last failed in this browser.
	failurePath = "/oauth2/sign_in_failed"
	// failureCookie holds that page, sealed. It is sent to headgate's own paths only, so it
	// never reaches an upstream.
	failureCookie     = "_headgate_failed"
	failureCookiePath = "/oauth2/"
	// failurePurpose binds the sealed page to this use of the session secrets.
	failurePurpose = "sign-in failure page"
)

// sealedFailure is a failure page and when it was sealed.
type sealedFailure struct {
	Page page  `json:"p"`
	At   int64 `json:"at"` // Unix seconds
}

// failSignIn answers a callback whose sign-in ended on p once its login was spent: it logs the
// failure with its cause (see logFailure) and shows p (see showSignInFailure).
func (g *Gateway) failSignIn(w http.ResponseWriter, r *http.Request, p page, cause error) {
	p.RequestID = g.logFailure(r, p, cause)
	g.showSignInFailure(w, r, p)
}

// showSignInFailure shows p, the page a sign-in ends on: a browser is sent to failurePath with
// p sealed in failureCookie; any other client gets p at once.
func (g *Gateway) showSignInFailure(w http.ResponseWriter, r *http.Request, p page) {
	if !isNavigation(r) {
		writePage(w, r, p)
		return
	}
	value, err := g.sealFailure(p)
	if err != nil {
		// Shown here, where a reload cannot show it again.
		g.log.Warn("sign-in failure page not sealed", "err", err)
		writePage(w, r, p)
		return
	}
	http.SetCookie(w, g.newFailureCookie(value, int(g.cookies.LoginTimeout()/time.Second)))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, failurePath, http.StatusSeeOther)
}

// serveSignInFailed shows the page of the sign-in that last failed in this browser. Without
// one (it expired, or the address was opened in another browser) it says so, or, to a person
// who is signed in, that they are.
func (g *Gateway) serveSignInFailed(w http.ResponseWriter, r *http.Request) {
	if p, ok := g.openFailure(r); ok {
		writePage(w, r, p)
		return
	}
	if s := g.liveSession(r); s != nil {
		writePage(w, r, g.signedInPage(s))
		return
	}
	p := pageNoFailure
	p.ActionHref = g.signInHref(g.home())
	writePage(w, r, p)
}

var pageNoFailure = page{Status: http.StatusOK, Title: "Nothing to show",
	Message: "This page shows how a sign-in in this browser ended, for a while afterwards, and there is none to show now. Sign in to go on.",
	Action:  "Sign in"}

// signedInPage tells the person of s, who reached a page about a sign-in, that they are signed
// in after all, and lets them go on.
func (g *Gateway) signedInPage(s *session.Session) page {
	who := signedInAs(s.Email)
	return page{Status: http.StatusOK, Title: "You are signed in",
		Message: "You are signed in as " + who + ", so there is nothing left to do here.",
		Action:  "Continue", ActionHref: g.home()}
}

// liveSession returns the session of r's cookie when it is live (or the store cannot say
// otherwise), else nil.
func (g *Gateway) liveSession(r *http.Request) *session.Session {
	s, err := g.cookies.Open(r)
	if err != nil {
		return nil
	}
	if err := g.store.Check(r.Context(), s); err != nil && !errors.Is(err, session.ErrUnavailable) {
		return nil
	}
	return s
}

// sealFailure seals p with the time, for failureCookie.
func (g *Gateway) sealFailure(p page) (string, error) {
	raw, err := json.Marshal(sealedFailure{Page: p, At: g.timing.Now().Unix()})
	if err != nil {
		return "", fmt.Errorf("encode failure page: %w", err)
	}
	return g.cookies.SealValue(failurePurpose, raw)
}

// openFailure returns the page of r's failureCookie while it is younger than the login timeout.
func (g *Gateway) openFailure(r *http.Request) (page, bool) {
	c, err := r.Cookie(failureCookie)
	if err != nil {
		return page{}, false
	}
	raw, err := g.cookies.OpenValue(failurePurpose, c.Value)
	if err != nil {
		return page{}, false
	}
	var f sealedFailure
	if json.Unmarshal(raw, &f) != nil || f.Page.Status == 0 {
		return page{}, false
	}
	if g.timing.Now().Sub(time.Unix(f.At, 0)) > g.cookies.LoginTimeout() {
		return page{}, false
	}
	return f.Page, true
}

// clearFailure removes r's failureCookie, if it has one: a sign-in has since succeeded.
func (g *Gateway) clearFailure(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(failureCookie); err == nil {
		http.SetCookie(w, g.newFailureCookie("", -1))
	}
}

// newFailureCookie is failureCookie with value, for maxAge seconds (negative: expired).
func (g *Gateway) newFailureCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     failureCookie,
		Value:    value,
		Path:     failureCookiePath,
		MaxAge:   maxAge,
		Secure:   g.public.Scheme == "https",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
