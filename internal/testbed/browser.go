package testbed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Page is a response whose body has been read.
type Page struct {
	Status int
	// URL is the URL that answered (the last one of a chain of redirects).
	URL    *url.URL
	Header http.Header
	Body   string
	// Hops lists "STATUS METHOD URL-without-query" for each response on the way, for failure
	// messages that show where a redirect chain went.
	Hops []string
}

// NoRedirectClient returns a client with jar (which may be nil) that hands back redirects
// instead of following them, so that each hop can be seen.
func NoRedirectClient(jar http.CookieJar, timeout time.Duration) *http.Client {
	return &http.Client{
		Jar:           jar,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// BrowserAccept is the Accept header a browser sends when it navigates to a page.
const BrowserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// Fetch sends one request with jar's cookies and returns the response without following a
// redirect. header may be nil.
func Fetch(ctx context.Context, jar http.CookieJar, method, rawURL string, header http.Header) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for name, values := range header {
		// Assigned directly, not through Set, so that tests can send names in any spelling.
		req.Header[name] = values
	}
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	resp, err := NoRedirectClient(jar, 30*time.Second).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, stripQuery(req.URL), withoutURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stripQuery(req.URL), err)
	}
	return &Page{Status: resp.StatusCode, URL: req.URL, Header: resp.Header, Body: string(body),
		Hops: []string{fmt.Sprintf("%d %s %s", resp.StatusCode, method, stripQuery(req.URL))}}, nil
}

// Browse loads rawURL like a browser navigating to it (or submitting form, when not nil) and
// follows redirects, except one to a URL that starts with stopAt (when not empty): that
// redirect is returned.
func Browse(ctx context.Context, jar http.CookieJar, rawURL string, form url.Values, stopAt string) (*Page, error) {
	method, body := http.MethodGet, ""
	if form != nil {
		method, body = http.MethodPost, form.Encode()
	}
	client := NoRedirectClient(jar, 30*time.Second)
	var hops []string
	for range 20 {
		req, err := http.NewRequestWithContext(ctx, method, rawURL, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", BrowserAccept)
		req.Header.Set("User-Agent", "headgate-e2e")
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s (after %s): %w", method, stripQuery(req.URL), strings.Join(hops, " -> "), withoutURL(err))
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stripQuery(req.URL), err)
		}
		hops = append(hops, fmt.Sprintf("%d %s %s", resp.StatusCode, method, stripQuery(req.URL)))
		page := &Page{Status: resp.StatusCode, URL: req.URL, Header: resp.Header, Body: string(data), Hops: hops}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return page, nil
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("redirect from %s: %w", stripQuery(req.URL), err)
		}
		if stopAt != "" && strings.HasPrefix(next.String(), stopAt) {
			return page, nil
		}
		// Every redirect in these flows is followed with GET, as browsers do for 302 and 303.
		rawURL, method, body = next.String(), http.MethodGet, ""
	}
	return nil, fmt.Errorf("more than 20 redirects: %s", strings.Join(hops, " -> "))
}

var formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)

// BrowserLoginUntil navigates to start, signs in at Dex's password form with email and password
// when the redirects lead there, and returns the page the flow ends on. A redirect to a URL
// that starts with stopAt (when not empty) is not followed but returned, so that the caller
// chooses when the client gets its code. It fails when the flow never reaches Dex's form or
// Dex refuses the password.
func BrowserLoginUntil(ctx context.Context, jar http.CookieJar, start, email, password, stopAt string) (*Page, error) {
	page, err := Browse(ctx, jar, start, nil, stopAt)
	if err != nil {
		return nil, err
	}
	if !isDexLoginForm(page) {
		return nil, fmt.Errorf("sign-in did not reach dex's login form: %s", strings.Join(page.Hops, " -> "))
	}
	action := page.URL
	if m := formAction.FindStringSubmatch(page.Body); m != nil {
		if u, err := page.URL.Parse(html.UnescapeString(m[1])); err == nil {
			action = u
		}
	}
	hops := page.Hops
	page, err = Browse(ctx, jar, action.String(), url.Values{"login": {email}, "password": {password}}, stopAt)
	if err != nil {
		return nil, err
	}
	page.Hops = append(hops, page.Hops...)
	if isDexLoginForm(page) {
		return nil, fmt.Errorf("dex refused the password of %s", email)
	}
	return page, nil
}

// isDexLoginForm reports whether page is Dex's password form.
func isDexLoginForm(page *Page) bool {
	return page.Status == http.StatusOK && strings.HasSuffix(page.URL.Path, "/auth/"+dexConnector+"/login") &&
		strings.Contains(page.Body, `name="password"`)
}

// withoutURL returns the cause of a client error without the URL the client names in it, whose
// query may hold a code or a state.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// stripQuery keeps codes and states out of messages.
func stripQuery(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}

// DexAuthCode signs u in at Dex directly as headgate's client would, and returns the
// authorization code Dex redirects to the first reserved gateway callback with. It checks the
// peers without a headgate binary.
func (s *Stack) DexAuthCode(ctx context.Context, jar http.CookieJar, u User) (code, redirectURI string, err error) {
	redirectURI = "http://" + HostPort(s.gatewayPorts[0]) + "/oauth2/callback"
	state := rand.Text()
	start := s.Issuer + "/auth?" + url.Values{
		"client_id": {GatewayClientID}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope": {"openid email profile"}, "state": {state}, "connector_id": {dexConnector},
	}.Encode()
	page, err := BrowserLoginUntil(ctx, jar, start, u.Email, u.Password, redirectURI)
	if err != nil {
		return "", "", fmt.Errorf("dex login of %s: %w", u.Email, err)
	}
	loc, err := page.URL.Parse(page.Header.Get("Location"))
	if err != nil || page.Status < 300 || page.Status > 399 {
		return "", "", fmt.Errorf("dex login of %s: ended with %d, not a redirect to the client", u.Email, page.Status)
	}
	if got := loc.Query().Get("state"); got != state {
		return "", "", fmt.Errorf("dex login of %s: the redirect carries another state", u.Email)
	}
	code = loc.Query().Get("code")
	if code == "" {
		return "", "", fmt.Errorf("dex login of %s: the redirect carries no code (error %q)", u.Email, loc.Query().Get("error"))
	}
	return code, redirectURI, nil
}
