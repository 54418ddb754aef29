package gateway

import (
	"bytes"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"headgate/session"
)

// page is what a person sees when the gateway answers instead of the upstream. Its message
// says what happened to the person who reads it and what they can do next: sign in, try again,
// sign out, or whom to ask. The JSON names keep a page short where it is sealed into a cookie
// (see failSignIn).
type page struct {
	Status  int    `json:"s"`
	Title   string `json:"t"`
	Message string `json:"m"`
	// Action, when set, is a link offered below the message, such as "Sign in again"; with
	// ActionPost, a button that submits a POST to ActionHref instead.
	Action     string `json:"a,omitempty"`
	ActionHref string `json:"h,omitempty"`
	ActionPost bool   `json:"p,omitempty"`
	// Refresh makes the browser go on to ActionHref by itself, as soon as it shows the page.
	Refresh bool `json:"r,omitempty"`
	// RequestID, when set, is shown for the person to quote to an administrator: the log line
	// of the failure carries it too.
	RequestID string `json:"i,omitempty"`
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · headgate</title>
{{if .Refresh}}<meta http-equiv="refresh" content="0; url={{.ActionHref}}">{{end}}
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
main{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
h1{font-size:1.4rem;margin:0 0 .75rem}p{margin:.5rem 0}small{color:#667}
form{margin:0}
.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;background:#2d5be3;color:#fff;border:0;border-radius:6px;font:inherit;text-decoration:none;cursor:pointer}
</style></head>
<body><main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .ActionPost}}<form method="post" action="{{.ActionHref}}"><button class="button">{{.Action}}</button></form>
{{- else if .Action}}<a class="button" href="{{.ActionHref}}">{{.Action}}</a>{{end}}
<p><small>{{.Status}} · headgate{{with .RequestID}} · request {{.}}{{end}}</small></p>
</main></body></html>
`))

// fail is the one place that answers a request with an error. It logs the failure (see
// logFailure), and answers a browser with a readable page, which shows the request ID of the
// log line, and any other client with a short status text. The cause is never shown to the
// client.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, p page, cause error) {
	p.RequestID = g.logFailure(r, p, cause)
	writePage(w, r, p)
}

// logFailure logs that r is answered with p because of cause (5xx at Error, 4xx at Warn), and
// returns the request ID the line carries (see failureID).
func (g *Gateway) logFailure(r *http.Request, p page, cause error) string {
	level := slog.LevelWarn
	if p.Status >= 500 {
		level = slog.LevelError
	}
	id := failureID(r)
	attrs := []slog.Attr{
		slog.String("path", r.URL.Path),
		slog.Int("status", p.Status),
		slog.String("title", p.Title),
		slog.String("request_id", id),
	}
	if cause != nil {
		attrs = append(attrs, slog.String("err", cause.Error()))
	}
	g.log.LogAttrs(r.Context(), level, "request failed", attrs...)
	return id
}

// writePage answers with p: HTML for a browser, plain text otherwise. Headers are set before
// the status is written. An answer to a request with a body ends the connection (see
// closeUnreadBody).
func writePage(w http.ResponseWriter, r *http.Request, p page) {
	writePageAs(w, r, p, acceptsHTML(r))
}

// writePageAs answers with p, as HTML when html is set and as plain text otherwise.
func writePageAs(w http.ResponseWriter, r *http.Request, p page, html bool) {
	closeUnreadBody(w, r)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if !html {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(p.Status)
		if r.Method != http.MethodHead {
			w.Write([]byte(strconv.Itoa(p.Status) + " " + p.Title + "\n"))
		}
		return
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		// The template is fixed and its data are strings: this cannot fail at run time.
		panic(err)
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// acceptsHTML reports whether the client prefers a page to plain text.
func acceptsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isNavigation reports whether r is a browser loading a page, which may be redirected to sign
// in; fetches, API calls and sub-resources get a status code instead.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return acceptsHTML(r)
}

// headerRequestID carries a request's ID: from a trusted proxy, and to the upstream.
const headerRequestID = "X-Request-Id"

// requestID returns the request's ID when it looks like one: with Config.AccessLog, the one
// serveLogged gave it; otherwise whatever the client or a load balancer sent.
func requestID(r *http.Request) string {
	id := r.Header.Get(headerRequestID)
	if len(id) == 0 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return ""
		}
	}
	return id
}

// failureID returns r's ID (see requestID) for the log line and the page of a failure, or,
// when r has none, a new one, which r then carries for the lines that follow.
func failureID(r *http.Request) string {
	if id := requestID(r); id != "" {
		return id
	}
	id := session.NewID()
	r.Header.Set(headerRequestID, id)
	return id
}

// signInHref is the address of a sign-in that returns to rd, once checked (see safeRedirect).
func (g *Gateway) signInHref(rd string) string {
	return "/oauth2/start?rd=" + url.QueryEscape(g.safeRedirect(rd))
}

// againHref is the address that repeats r: its own, checked, for a GET or HEAD, and "" for any
// other method, which a link cannot repeat.
func (g *Gateway) againHref(r *http.Request) string {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return ""
	}
	return g.safeRedirect(r.URL.RequestURI())
}

// home is where a person goes on to from a page that has no other target: Headplane when
// headgate serves it, else the root.
func (g *Gateway) home() string {
	return g.hpPath + "/"
}

// withAction returns p offering action, a link to href; without an href, p as it is.
func (p page) withAction(action, href string) page {
	if href != "" {
		p.Action, p.ActionHref, p.ActionPost = action, href, false
	}
	return p
}

// unauthorizedPage is the 401 page of a request without a session, whose "Sign in" button goes
// to signIn.
func unauthorizedPage(signIn string) page {
	return page{Status: http.StatusUnauthorized, Title: "Sign-in required",
		Message: "You need to sign in to reach this page.", Action: "Sign in", ActionHref: signIn}
}

// Pages used by more than one handler. Those that offer to try again get their button where
// they are used, since the address to try depends on the request.
var (
	pageNotFound = page{Status: http.StatusNotFound, Title: "Not found",
		Message: "headgate has no page at this address. Check the link, or go on to the application."}
	pageStoreDown = page{Status: http.StatusServiceUnavailable, Title: "Sign-in is unavailable",
		Message: "headgate cannot reach its session store right now, so new sign-ins cannot be recorded. " + tryAgainLater}
	pageIdPDown = page{Status: http.StatusServiceUnavailable, Title: "Identity provider unreachable",
		Message: "headgate cannot reach the identity provider right now, so you cannot sign in. " + tryAgainLater}
	pageHeadscaleDown = page{Status: http.StatusServiceUnavailable, Title: "Headscale unreachable",
		Message: "headgate cannot reach Headscale to find your user. " + tryAgainLater}
	pageGroupsUnusable = page{Status: http.StatusForbidden, Title: "Too many groups",
		Message: "Your account at the identity provider is in more groups than headgate can keep in a session, or its groups cannot be read. Ask an administrator to send headgate fewer groups (a groups claim of its own at the provider)."}
	pageNoRoute = page{Status: http.StatusNotFound, Title: "Nothing here",
		Message: "No application is served at this address. Check the link, or ask an administrator where the application moved."}
	pageAssertionDown = page{Status: http.StatusServiceUnavailable, Title: "Signing unavailable",
		Message: "headgate cannot vouch for you to this application right now, because its signing keys are out of reach. " + tryAgainLater}
)

// tryAgainLater ends the message of a page about something out of reach for a while.
const tryAgainLater = "Please try again in a minute; if this goes on, tell an administrator."

// notAllowedPage is the page of a signed-in person the route's access rules leave out. It says
// what kind of membership they lack, never the rule itself.
func notAllowedPage(email, lacks string) page {
	who := signedInAs(email)
	return page{Status: http.StatusForbidden, Title: "Not allowed here",
		Message: "You signed in as " + who + ", but this application is open only to people with " + lacks +
			", and your account has none. Ask an administrator for access, or sign in with another account.",
		Action: "Sign out", ActionHref: "/oauth2/sign_out"}
}

// signedInAs names a signed-in person on a page: by their email, or "your account" without one.
func signedInAs(email string) string {
	if email == "" {
		return "your account"
	}
	return email
}
