package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"headgate/linker"
	"headgate/session"
)

// What headgate does for Headplane, the Headscale web UI, when HeadplaneConfig.Path says the
// upstream serves it: answer its React Router data requests in a way its client follows, end
// the session from its Logout, and keep a person from linking their Headplane account to any
// Headscale user but their own.

// HeadplaneConfig tells headgate that the upstream serves Headplane, and where.
type HeadplaneConfig struct {
	// Path is Headplane's base path as browsers see it: /admin, the path Headplane is built
	// for. Setting it turns on, under that path only:
	//   - answers to React Router data requests (paths ending in .data) that Headplane's
	//     client follows: without a session the tab is sent to sign in and comes back to the
	//     page it was on; a refusal loads headgate's page for it instead of an error in the tab;
	//   - Path/logout, Headplane's Logout (sent as the data request Path/logout.data), as a
	//     sign-out path: it ends headgate's session on every instance;
	//   - the link guard: Headplane links a person's account to whichever Headscale user its
	//     picker posts; headgate lets only the person's own Headscale user through;
	//   - LinkAtSignIn.
	// Default: empty, none of this.
	Path string `yaml:"path"`

	// LinkAtSignIn links the person's Headplane account to their own Headscale user at each
	// sign-in (headgate posts Headplane's link form for them), so Headplane never shows its
	// picker of unclaimed users. A failure is logged and does not stop the sign-in. Default
	// true when Path is set.
	LinkAtSignIn *bool `yaml:"link_at_sign_in"`
}

// validate checks the section; problems are prefixed with "headplane.".
func (c HeadplaneConfig) validate() []error {
	var errs []error
	p := c.Path
	switch {
	case p == "" && c.LinkAtSignIn != nil:
		errs = append(errs, errors.New("headplane.link_at_sign_in: needs headplane.path"))
	case p == "":
	case !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#%\\ \t") || strings.Contains(p, "//"):
		errs = append(errs, fmt.Errorf("headplane.path: must be a plain path starting with /, such as /admin (got %q)", p))
	case strings.TrimSuffix(p, "/") == "" || p == "/oauth2" || strings.HasPrefix(p, "/oauth2/"):
		errs = append(errs, fmt.Errorf("headplane.path: %q would cover headgate's own or every path; Headplane serves under /admin", p))
	}
	return errs
}

// maxLinkForm bounds the body of a request to Headplane's link action; the form has one field.
const maxLinkForm = 64 << 10

// headplaneLinkField is the form field of Headplane's link action.
const headplaneLinkField = "headscale_user_id"

// dataRequest reports whether r is a React Router data request to Headplane, and returns the
// page it is for: its path without ".data" ("/admin/_.data" is "/admin/") and its query
// without React Router's "_routes". The client's request for more of the route manifest
// (Path/__manifest, before it navigates to a page it has not seen yet) counts as one too: it
// follows the same answer by loading the page it was going to.
func (g *Gateway) dataRequest(r *http.Request) (string, bool) {
	path := r.URL.Path
	if g.hpManifest != "" && strings.EqualFold(path, g.hpManifest) {
		return g.hpPath + "/", true
	}
	if g.hpPath == "" || !strings.HasSuffix(path, ".data") || !g.underHeadplane(path) {
		return "", false
	}
	if strings.HasSuffix(path, "/_.data") {
		path = strings.TrimSuffix(path, "_.data")
	} else {
		path = strings.TrimSuffix(path, ".data")
	}
	q := r.URL.Query()
	q.Del("_routes")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path, true
}

// underHeadplane reports whether path is Headplane's base path or below it. Like Headplane's
// router, it ignores case.
func (g *Gateway) underHeadplane(path string) bool {
	n := len(g.hpPath)
	return len(path) >= n && strings.EqualFold(path[:n], g.hpPath) && (len(path) == n || path[n] == '/' || path[n] == '.')
}

// headplaneIndex reports whether r is for Headplane's index route, whose action links
// accounts. The test is wider than Headplane's (any query, any case, the page or its data
// request) so that no spelling Headplane routes there can slip past the guard.
func (g *Gateway) headplaneIndex(r *http.Request) bool {
	if g.hpPath == "" {
		return false
	}
	path := r.URL.Path
	if page, ok := g.dataRequest(r); ok {
		path, _, _ = strings.Cut(page, "?")
	}
	return strings.EqualFold(strings.TrimRight(path, "/"), g.hpPath)
}

// remixRedirect answers a data request with what React Router's client follows: a 204 whose
// X-Remix-Redirect names where the tab goes, loaded as a whole new document. target is made
// absolute: the client would put Headplane's base path in front of a bare path.
func (g *Gateway) remixRedirect(w http.ResponseWriter, r *http.Request, target string) {
	closeUnreadBody(w, r)
	if strings.HasPrefix(target, "/") {
		target = g.origin + target
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Remix-Redirect", target)
	h.Set("X-Remix-Reload-Document", "true")
	w.WriteHeader(http.StatusNoContent)
}

// refuseDataRequest answers a data request whose identity authenticate did not prove (res is
// not authOK). The tab loads the page it was on as a document: without a session that is a
// sign-in that returns there; otherwise headgate's page says what is wrong (and logs it).
func (g *Gateway) refuseDataRequest(w http.ResponseWriter, r *http.Request, page string, res authResult, err error) {
	g.metrics.denied[res].Inc()
	if res == authNone {
		g.dropBadCookie(w, r, err)
		g.remixRedirect(w, r, "/oauth2/start?rd="+url.QueryEscape(g.safeRedirect(page)))
		return
	}
	g.remixRedirect(w, r, g.safeRedirect(page))
}

// guardLink lets a request to Headplane's index route through only when it cannot link the
// person's Headplane account to another Headscale user. Headplane's link action takes any
// headscale_user_id it is posted; headgate refuses every value but the person's own, and
// forwards a form it wrote itself (that one field, URL-encoded), so that no difference between
// its form parser and Headplane's can smuggle a second value through. It reports whether the
// request may go on; otherwise it has answered.
func (g *Gateway) guardLink(w http.ResponseWriter, r *http.Request, p principal) bool {
	values, err := readForm(w, r)
	if err != nil {
		g.fail(w, r, pageLinkUnreadable.withAction("Back to Headplane", g.hpPath+"/"), fmt.Errorf("headplane link form: %w", err))
		return false
	}
	for _, v := range values[headplaneLinkField] {
		if !p.link.Linked() || v != p.link.UserID {
			g.metrics.headplaneLinkRefused.Inc()
			refused := g.linkRefusedPage(p.link)
			if _, ok := g.dataRequest(r); ok {
				// Headplane shows the text of a refused data request as the error's status text.
				refused.Title += ". " + refused.Message
			}
			g.fail(w, r, refused, fmt.Errorf("headplane link to another headscale user refused: user %s asked for %q",
				p.link.UserID, truncate(v, 64)))
			return false
		}
	}
	form := ""
	if len(values[headplaneLinkField]) > 0 {
		form = url.Values{headplaneLinkField: {p.link.UserID}}.Encode()
	}
	r.Body = io.NopCloser(strings.NewReader(form))
	r.ContentLength = int64(len(form))
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.Itoa(len(form)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return true
}

// readForm reads r's body as the form Headplane would parse: URL-encoded or multipart. An
// empty body is an empty form; any other body, or one over maxLinkForm, is an error.
func readForm(w http.ResponseWriter, r *http.Request) (map[string][]string, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLinkForm))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	ct := r.Header.Get("Content-Type")
	if len(body) == 0 && ct == "" {
		return nil, nil
	}
	media, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("content type: %w", err)
	}
	switch media {
	case "application/x-www-form-urlencoded":
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("url-encoded form: %w", err)
		}
		return values, nil
	case "multipart/form-data":
		form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(maxLinkForm)
		if err != nil {
			return nil, fmt.Errorf("multipart form: %w", err)
		}
		defer form.RemoveAll()
		values := form.Value
		if len(form.File[headplaneLinkField]) > 0 {
			// Headplane would link the file's string form; a file is never a user ID.
			values[headplaneLinkField] = append(values[headplaneLinkField], "(a file)")
		}
		return values, nil
	}
	return nil, fmt.Errorf("content type %q is not a form", media)
}

// linkAtSignIn links the person's Headplane account to their Headscale user, as Headplane's
// picker would with their own user chosen: it posts the link form to Headplane's index action
// with the person's identity headers. Headplane keeps a Headscale user linked to at most one
// account, so this changes nothing when another account holds it.
func (g *Gateway) linkAtSignIn(ctx context.Context, s *session.Session, link linker.Link) {
	if !g.hpLinkAtSignIn || !link.Linked() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.UpstreamTimeout)
	defer cancel()
	u := *g.def.upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + g.hpPath + "/"
	u.RawPath = ""
	u.RawQuery = "index"
	form := url.Values{headplaneLinkField: {link.UserID}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form))
	if err != nil {
		g.log.Warn("headplane link at sign-in", "user_id", link.UserID, "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if g.def.preserveHost {
		req.Host = g.public.Host
	}
	setIdentityHeaders(req.Header, principal{session: s, link: link}, g.def, false)
	resp, err := g.proxy.Transport.RoundTrip(req)
	if err != nil {
		g.log.Warn("headplane link at sign-in", "user_id", link.UserID, "err", err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		g.log.Warn("headplane link at sign-in", "user_id", link.UserID, "status", resp.StatusCode)
		return
	}
	g.log.LogAttrs(ctx, slog.LevelDebug, "headplane link at sign-in",
		slog.String("user_id", link.UserID), slog.Int("status", resp.StatusCode))
}

// truncate shortens s, a client's value, for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Pages of the link guard.
var pageLinkUnreadable = page{Status: http.StatusBadRequest, Title: "Request not understood",
	Message: "headgate could not read this form, so it did not pass it on. Go back to Headplane and try again."}

// linkRefusedPage tells a person that they may link only their own Headscale user.
func (g *Gateway) linkRefusedPage(link linker.Link) page {
	msg := "You have no Headscale user, so you cannot link one to your Headplane account."
	if link.Linked() {
		msg = "You signed in as the Headscale user \u201c" + link.UserName + "\u201d. Your Headplane account can be linked to that user only."
	}
	return page{Status: http.StatusForbidden, Title: "Not your Headscale user", Message: msg,
		Action: "Back to Headplane", ActionHref: g.hpPath + "/"}
}
