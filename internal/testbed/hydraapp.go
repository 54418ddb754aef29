package testbed

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// HydraUser is a person the login app beside the stack's Hydra signs in with Login and
// Password.
type HydraUser struct {
	Login    string
	Password string
	// Subject is the sub claim of the person's tokens.
	Subject string
	// Email and EmailVerified are the email and email_verified claims, granted with the email
	// scope.
	Email         string
	EmailVerified bool
	// Groups is the groups claim, granted only to a client that asks for the groups scope.
	Groups []string
}

// The people of the stack's Hydra. Their subjects contain "/", which Dex's never do.
var (
	// Frank's email is verified, so a Headscale CLI user with it links him.
	HydraFrank = HydraUser{Login: "frank", Password: "frank-hydra", Subject: "people/frank",
		Email: "frank@example.com", EmailVerified: true, Groups: []string{"hydra-ops", "team/blue"}}
	// Gina's email is not verified: email matching must not link her.
	HydraGina = HydraUser{Login: "gina", Password: "gina-hydra", Subject: "people/gina",
		Email: "gina@example.com", EmailVerified: false}
)

// HydraPeople returns every person the login app knows.
func HydraPeople() []HydraUser { return []HydraUser{HydraFrank, HydraGina} }

// hydraApp is the login, consent and logout app Hydra sends browsers to: it checks the
// password of HydraPeople, accepts every consent with the claims of the person, and accepts
// every logout. It records the login session of each sign-in, for back-channel logout tests.
type hydraApp struct {
	url string
	srv *http.Server
	h   *Hydra

	mu       sync.Mutex
	sessions map[string][]string // subject -> login session IDs, oldest first
}

func startHydraApp(h *Hydra) (*hydraApp, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start hydra's login app: %w", err)
	}
	a := &hydraApp{url: "http://" + l.Addr().String(), h: h, sessions: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.serveLogin)
	mux.HandleFunc("POST /login", a.serveLoginForm)
	mux.HandleFunc("GET /consent", a.serveConsent)
	mux.HandleFunc("GET /logout", a.serveLogout)
	mux.HandleFunc("GET /signed_out", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "<h1>Signed out at Hydra</h1>")
	})
	a.srv = &http.Server{Handler: mux}
	go a.srv.Serve(l)
	return a, nil
}

func (a *hydraApp) close() { a.srv.Close() }

func (a *hydraApp) sessionIDs(subject string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sessions[subject])
}

func (a *hydraApp) recordSession(subject, sid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sid != "" && !slices.Contains(a.sessions[subject], sid) {
		a.sessions[subject] = append(a.sessions[subject], sid)
	}
}

// loginForm marks the app's password form, for HydraLogin.
const loginForm = `<form method="post" action="/login" id="hydra-login">`

// serveLogin answers Hydra's login request: at once when Hydra remembers the person,
// otherwise with the password form.
func (a *hydraApp) serveLogin(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	var req struct {
		Skip    bool   `json:"skip"`
		Subject string `json:"subject"`
	}
	q := url.Values{"login_challenge": {challenge}}
	if err := a.h.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login", q, nil, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if req.Skip {
		a.acceptLogin(w, r, challenge, req.Subject)
		return
	}
	a.writeForm(w, challenge, "")
}

func (a *hydraApp) writeForm(w http.ResponseWriter, challenge, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<h1>Sign in at Hydra</h1><p>%s</p>%s
<input type="hidden" name="challenge" value="%s">
<input name="login"><input name="password" type="password"><button>Sign in</button></form>`,
		html.EscapeString(problem), loginForm, html.EscapeString(challenge))
}

// serveLoginForm checks the submitted password.
func (a *hydraApp) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	challenge := r.PostFormValue("challenge")
	for _, u := range HydraPeople() {
		if u.Login == r.PostFormValue("login") && u.Password == r.PostFormValue("password") {
			a.acceptLogin(w, r, challenge, u.Subject)
			return
		}
	}
	a.writeForm(w, challenge, "wrong login or password")
}

// acceptLogin tells Hydra who signed in, remembering the login session so that Hydra can end
// it later (and send the back-channel logout).
func (a *hydraApp) acceptLogin(w http.ResponseWriter, r *http.Request, challenge, subject string) {
	var next struct {
		RedirectTo string `json:"redirect_to"`
	}
	q := url.Values{"login_challenge": {challenge}}
	body := map[string]any{"subject": subject, "remember": true, "remember_for": 0}
	if err := a.h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept", q, body, &next); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, next.RedirectTo, http.StatusFound)
}

// serveConsent grants every requested scope, with the claims of the person in the ID token:
// email and email_verified for the email scope, groups for the groups scope.
func (a *hydraApp) serveConsent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	q := url.Values{"consent_challenge": {challenge}}
	var req struct {
		Subject           string   `json:"subject"`
		RequestedScope    []string `json:"requested_scope"`
		RequestedAudience []string `json:"requested_access_token_audience"`
		LoginSessionID    string   `json:"login_session_id"`
	}
	if err := a.h.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent", q, nil, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	a.recordSession(req.Subject, req.LoginSessionID)
	claims := map[string]any{}
	for _, u := range HydraPeople() {
		if u.Subject != req.Subject {
			continue
		}
		if slices.Contains(req.RequestedScope, "email") {
			claims["email"], claims["email_verified"] = u.Email, u.EmailVerified
		}
		if slices.Contains(req.RequestedScope, "profile") {
			claims["preferred_username"] = u.Login
		}
		if slices.Contains(req.RequestedScope, "groups") && u.Groups != nil {
			claims["groups"] = u.Groups
		}
	}
	body := map[string]any{
		"grant_scope":                 req.RequestedScope,
		"grant_access_token_audience": req.RequestedAudience,
		"session":                     map[string]any{"id_token": claims},
	}
	var next struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := a.h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", q, body, &next); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, next.RedirectTo, http.StatusFound)
}

// serveLogout accepts every logout request without asking.
func (a *hydraApp) serveLogout(w http.ResponseWriter, r *http.Request) {
	q := url.Values{"logout_challenge": {r.URL.Query().Get("logout_challenge")}}
	var next struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := a.h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept", q, nil, &next); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, next.RedirectTo, http.StatusFound)
}

// HydraLogin signs u in the way a browser does at a client of the stack's Hydra: it navigates
// to start (such as a path behind headgate), submits u's password at the login app's form
// when the redirects lead there (not when Hydra remembers u), and follows the redirects back.
// It returns the page the flow ends on; jar keeps the cookies.
func HydraLogin(ctx context.Context, jar http.CookieJar, start string, u HydraUser) (*Page, error) {
	page, err := Browse(ctx, jar, start, nil, "")
	if err != nil {
		return nil, fmt.Errorf("sign in %s at hydra: %w", u.Login, err)
	}
	if !isHydraLoginForm(page) {
		return page, nil
	}
	hops := page.Hops
	action, _ := page.URL.Parse("/login")
	challenge := ""
	if _, rest, ok := strings.Cut(page.Body, `name="challenge" value="`); ok {
		challenge, _, _ = strings.Cut(rest, `"`)
	}
	form := url.Values{"challenge": {html.UnescapeString(challenge)}, "login": {u.Login}, "password": {u.Password}}
	if page, err = Browse(ctx, jar, action.String(), form, ""); err != nil {
		return nil, fmt.Errorf("sign in %s at hydra: %w", u.Login, err)
	}
	page.Hops = append(hops, page.Hops...)
	if isHydraLoginForm(page) {
		return nil, fmt.Errorf("sign in %s at hydra: the login app refused the password", u.Login)
	}
	return page, nil
}

// isHydraLoginForm reports whether page is the login app's password form.
func isHydraLoginForm(page *Page) bool {
	return page.Status == http.StatusOK && page.URL.Path == "/login" && strings.Contains(page.Body, loginForm)
}
