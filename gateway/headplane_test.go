package gateway

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func withHeadplane(o *envOptions) { o.headplane = "/admin" }

// send sends one request with b's cookies (b may be nil) and returns the answer without
// following a redirect; its body is read.
func (e *testEnv) send(t *testing.T, b *http.Client, method, path, contentType, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	c := &http.Client{CheckRedirect: noRedirect.CheckRedirect}
	if b != nil {
		c.Jar = b.Jar
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

// fetchHeader is what Headplane's client sends with a data request.
var fetchHeader = http.Header{"Accept": {"*/*"}, "Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Site": {"same-origin"}}

// checkRemixRedirect checks that resp is the redirect React Router's client follows, to target
// loaded as a new document.
func checkRemixRedirect(t *testing.T, resp *http.Response, target string) {
	t.Helper()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status: got %d, want 204", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Remix-Redirect"); got != target {
		t.Errorf("X-Remix-Redirect: got %q, want %q", got, target)
	}
	if got := resp.Header.Get("X-Remix-Reload-Document"); got != "true" {
		t.Errorf("X-Remix-Reload-Document: got %q, want true", got)
	}
}

func TestDataRequestWithoutSessionSignsIn(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withHeadplane, func(o *envOptions) { o.memory = true })
	withAlice(e)
	tests := []struct{ path, page string }{
		{"/admin/machines.data?_routes=routes%2Fmachines%2Foverview", "/admin/machines"},
		{"/admin/_.data?_routes=root", "/admin/"},
		{"/admin/machines/7.data?tab=keys&_routes=x", "/admin/machines/7?tab=keys"},
		{"/admin.data", "/admin"},
	}
	for _, tt := range tests {
		resp, _ := e.send(t, nil, http.MethodGet, tt.path, "", "", fetchHeader)
		checkRemixRedirect(t, resp, e.srv.URL+"/oauth2/start?rd="+url.QueryEscape(tt.page))
	}
	// Before it navigates to a page it has not seen, the client asks for more of its route
	// manifest; a 204 with X-Remix-Reload-Document makes it load that page as a document.
	resp, _ := e.send(t, nil, http.MethodGet, "/admin/__manifest?paths=%2Fadmin%2Fusers&version=abc", "", "", fetchHeader)
	checkRemixRedirect(t, resp, e.srv.URL+"/oauth2/start?rd="+url.QueryEscape("/admin/"))
	// A tampered cookie is no session either.
	resp, _ = e.send(t, nil, http.MethodGet, "/admin/machines.data", "", "",
		http.Header{"Cookie": {"_headgate=forged"}, "Accept": {"*/*"}})
	checkRemixRedirect(t, resp, e.srv.URL+"/oauth2/start?rd="+url.QueryEscape("/admin/machines"))
	if n := e.upstream.count(); n != 0 {
		t.Errorf("the upstream received %d requests, want none", n)
	}

	// The tab follows the redirect: sign-in, and back to the page it was on.
	b, final := e.signIn(t, "/oauth2/start?rd="+url.QueryEscape("/admin/machines/7?tab=keys"))
	if body := readBody(t, final); final.StatusCode != http.StatusOK || !strings.Contains(body, "GET /admin/machines/7?tab=keys") {
		t.Errorf("after sign-in: got %d %q, want the upstream's page /admin/machines/7?tab=keys", final.StatusCode, body)
	}
	// Signed in, data requests are proxied as they are.
	resp, body := e.send(t, b, http.MethodGet, "/admin/machines.data?_routes=x", "", "", fetchHeader)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/admin/machines.data?_routes=x user=alice") {
		t.Errorf("signed-in data request: got %d %q, want it proxied", resp.StatusCode, body)
	}
}

func TestDataRequestsElsewhereKeepTheirAnswers(t *testing.T) {
	t.Parallel()
	hp := newTestEnv(t, withHeadplane, func(o *envOptions) { o.memory = true })
	plain := newTestEnv(t, func(o *envOptions) { o.memory = true })
	for _, tt := range []struct {
		e    *testEnv
		path string
	}{
		{hp, "/reports/q3.data"},
		{hp, "/administrator/x.data"},
		{plain, "/admin/machines.data"},
	} {
		resp, _ := tt.e.send(t, nil, http.MethodGet, tt.path, "", "", fetchHeader)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Remix-Redirect") != "" {
			t.Errorf("%s: got %d (X-Remix-Redirect %q), want a plain 401", tt.path, resp.StatusCode, resp.Header.Get("X-Remix-Redirect"))
		}
	}
}

func TestHeadplaneLogout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withHeadplane)
	withAlice(e)
	b, _ := e.signedIn(t)
	old := e.sessionCookie(t, b)
	sent := e.upstream.count()

	// Headplane's Logout menu item.
	resp, _ := e.send(t, b, http.MethodPost, "/admin/logout.data", "application/x-www-form-urlencoded", "",
		http.Header{"Origin": {e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"*/*"}})
	checkRemixRedirect(t, resp, e.srv.URL+"/oauth2/signed_out")
	if !clearsCookie(resp, "_headgate") {
		t.Errorf("logout did not clear the session cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	if n := e.upstream.count(); n != sent {
		t.Errorf("the upstream received %d requests for the logout, want none", n-sent)
	}
	// The session is over, even for a browser that kept the cookie.
	resp, _ = e.send(t, nil, http.MethodGet, "/admin/machines.data", "", "", http.Header{"Cookie": {old.Name + "=" + old.Value}})
	checkRemixRedirect(t, resp, e.srv.URL+"/oauth2/start?rd="+url.QueryEscape("/admin/machines"))
	// Where the tab lands.
	resp, body := e.send(t, nil, http.MethodGet, "/oauth2/signed_out", "", "", http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You are signed out") ||
		!strings.Contains(body, `href="/oauth2/start?rd=%2Fadmin%2F"`) {
		t.Errorf("signed-out page: got %d %q, want one whose sign-in returns to Headplane", resp.StatusCode, body)
	}

	// Without JavaScript the form posts /admin/logout, which signs out too.
	b, _ = e.signedIn(t)
	resp, _ = e.send(t, b, http.MethodPost, "/admin/logout", "application/x-www-form-urlencoded", "",
		http.Header{"Origin": {e.srv.URL}, "Accept": {"text/html"}})
	if resp.StatusCode != http.StatusOK || !clearsCookie(resp, "_headgate") {
		t.Errorf("POST /admin/logout: got %d, cookie cleared %v; want the signed-out page and a cleared cookie",
			resp.StatusCode, clearsCookie(resp, "_headgate"))
	}
}

func clearsCookie(resp *http.Response, name string) bool {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

// multipartForm encodes fields as multipart/form-data; a field named "file:NAME" is a file.
func multipartForm(t *testing.T, fields ...[2]string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if name, ok := strings.CutPrefix(f[0], "file:"); ok {
			fw, err := mw.CreateFormFile(name, "id.txt")
			if err != nil {
				t.Fatal(err)
			}
			fw.Write([]byte(f[1]))
			continue
		}
		mw.WriteField(f[0], f[1])
	}
	mw.Close()
	return mw.FormDataContentType(), buf.String()
}

func TestLinkGuard(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withHeadplane, func(o *envOptions) { o.headplaneNoLink = true })
	withAlice(e) // Headscale user 1
	e.headscale.addUser("2", "bob", "bob@example.com", "")
	b, _ := e.signedIn(t)
	const form = "application/x-www-form-urlencoded"
	mpOwn, mpOwnBody := multipartForm(t, [2]string{"headscale_user_id", "1"})
	mpOther, mpOtherBody := multipartForm(t, [2]string{"headscale_user_id", "2"})
	mpFile, mpFileBody := multipartForm(t, [2]string{"file:headscale_user_id", "1"})

	tests := []struct {
		name, method, path, contentType, body string
		want                                  int    // 0: proxied
		wantBody                              string // what the upstream gets when proxied, or what the refusal says
	}{
		{"own, no JavaScript", "POST", "/admin/?index", form, "headscale_user_id=1", 0, "headscale_user_id=1"},
		{"own, data request", "POST", "/admin/_.data?index", form, "headscale_user_id=1&extra=x", 0, "headscale_user_id=1"},
		{"own, multipart", "POST", "/admin/_.data?index", mpOwn, mpOwnBody, 0, "headscale_user_id=1"},
		{"no field", "POST", "/admin/?index", form, "other=1", 0, ""},
		{"other", "POST", "/admin/?index", form, "headscale_user_id=2", 403, ""},
		{"other, data request", "POST", "/admin/_.data?index", form, "headscale_user_id=2", 403, "user \u201calice\u201d. Your Headplane account can be linked to that user only."},
		{"other, multipart", "POST", "/admin/_.data?index", mpOther, mpOtherBody, 403, ""},
		{"a file", "POST", "/admin/_.data?index", mpFile, mpFileBody, 403, ""},
		{"own then other", "POST", "/admin/?index", form, "headscale_user_id=1&headscale_user_id=2", 403, ""},
		{"encoded name", "POST", "/admin/?index", form, "headscale%5Fuser%5Fid=2", 403, ""},
		{"padded", "POST", "/admin/?index", form, "headscale_user_id=1%20", 403, ""},
		{"upper case path", "POST", "/ADMIN/?index", form, "headscale_user_id=2", 403, ""},
		{"no slash", "POST", "/admin?index", form, "headscale_user_id=2", 403, ""},
		{"dot data", "POST", "/admin/.data?index", form, "headscale_user_id=2", 403, ""},
		{"encoded query", "POST", "/admin/?%69ndex", form, "headscale_user_id=2", 403, ""},
		{"no index", "POST", "/admin/", form, "headscale_user_id=2", 403, ""},
		{"PUT", "PUT", "/admin/?index", form, "headscale_user_id=2", 403, ""},
		{"bad encoding", "POST", "/admin/?index", form, "headscale_user_id=1%", 400, ""},
		{"json", "POST", "/admin/?index", "application/json", `{"headscale_user_id":"2"}`, 400, ""},
		{"no content type", "POST", "/admin/?index", "", "headscale_user_id=2", 400, ""},
		{"too large", "POST", "/admin/?index", form, "headscale_user_id=1&x=" + strings.Repeat("a", maxLinkForm), 400, ""},
	}
	for _, tt := range tests {
		before := e.upstream.count()
		resp, body := e.send(t, b, tt.method, tt.path, tt.contentType, tt.body, http.Header{"Accept": {"*/*"}})
		if tt.want != 0 {
			if resp.StatusCode != tt.want || e.upstream.count() != before {
				t.Errorf("%s: got %d, upstream reached %v; want %d and not reached", tt.name, resp.StatusCode, e.upstream.count() != before, tt.want)
			}
			if tt.want == 403 && !strings.Contains(body, "Not your Headscale user") || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s: body %q, want the refusal", tt.name, body)
			}
			continue
		}
		up := e.upstream.last()
		if resp.StatusCode != http.StatusOK || e.upstream.count() != before+1 {
			t.Errorf("%s: got %d, want it proxied", tt.name, resp.StatusCode)
			continue
		}
		got := upstreamBody(t, up)
		if got != tt.wantBody || up.Header.Get("Content-Type") != form || up.ContentLength != int64(len(tt.wantBody)) {
			t.Errorf("%s: upstream got body %q (%s, %d bytes), want %q", tt.name, got, up.Header.Get("Content-Type"), up.ContentLength, tt.wantBody)
		}
	}

	// A browser without JavaScript gets a page; Headplane's other actions are not touched.
	resp, body := e.send(t, b, "POST", "/admin/?index", form, "headscale_user_id=2", http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "\u201calice\u201d") || !strings.Contains(body, `href="/admin/"`) {
		t.Errorf("refusal page: got %d %q", resp.StatusCode, body)
	}
	resp, _ = e.send(t, b, "POST", "/admin/users.data", form, "action_id=delete_user&headscale_user_id=2", nil)
	if up := e.upstream.last(); resp.StatusCode != http.StatusOK || upstreamBody(t, up) != "action_id=delete_user&headscale_user_id=2" {
		t.Errorf("another action: got %d, want it proxied unchanged", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), `headplane link to another headscale user refused: user 1 asked for \"2\"`) {
		t.Error("no log line for the refused link")
	}
}

// upstreamBody returns the body the upstream received with r.
func upstreamBody(t *testing.T, r *http.Request) string {
	t.Helper()
	if r.Body == nil {
		return ""
	}
	return readBody(t, &http.Response{Body: r.Body})
}

func TestLinkAtSignIn(t *testing.T) {
	t.Parallel()
	linkStatus := http.StatusFound
	e := newTestEnv(t, withHeadplane, func(o *envOptions) {
		o.upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				w.WriteHeader(linkStatus)
				return
			}
			w.Write([]byte("page " + r.URL.RequestURI()))
		})
	})
	withAlice(e)
	_, resp := e.signIn(t, "/admin/")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "page /admin/" {
		t.Fatalf("sign-in: got %d %q", resp.StatusCode, body)
	}
	var link *http.Request
	for _, r := range e.upstream.requests() {
		if r.Method == http.MethodPost {
			link = r
		}
	}
	if link == nil {
		t.Fatal("headgate did not post Headplane's link form")
	}
	if got := link.URL.RequestURI(); got != "/admin/?index" {
		t.Errorf("link posted to %q, want /admin/?index", got)
	}
	if got := upstreamBody(t, link); got != "headscale_user_id=1" {
		t.Errorf("link form: got %q", got)
	}
	for name, want := range map[string]string{"X-Headscale-User-Id": "1", "X-Headscale-User": "alice",
		"Content-Type": "application/x-www-form-urlencoded", "Cookie": ""} {
		if got := link.Header.Get(name); got != want {
			t.Errorf("link %s: got %q, want %q", name, got, want)
		}
	}
	if got, want := link.Host, mustURL(t, e.srv.URL).Host; got != want {
		t.Errorf("link Host: got %q, want the public %q", got, want)
	}

	// Headplane failing to link does not stop the sign-in.
	linkStatus = http.StatusInternalServerError
	_, resp = e.signIn(t, "/admin/")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "page /admin/" {
		t.Errorf("sign-in with a failing link: got %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(e.logs.String(), "headplane link at sign-in") {
		t.Error("no log line for the failed link")
	}
}

func TestNoLinkAtSignInWhenOff(t *testing.T) {
	t.Parallel()
	for _, opt := range []func(*envOptions){
		func(o *envOptions) { o.headplane = "/admin"; o.headplaneNoLink = true },
		func(o *envOptions) {}, // Headplane not configured
	} {
		e := newTestEnv(t, opt, func(o *envOptions) { o.memory = true })
		withAlice(e)
		e.signedIn(t)
		for _, r := range e.upstream.requests() {
			if r.Method != http.MethodGet {
				t.Errorf("the upstream received %s %s at sign-in, want nothing but the page", r.Method, r.URL)
			}
		}
	}
}
