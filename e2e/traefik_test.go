package e2e

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"headgate/internal/testbed"
)

// Traefik cannot be built here, so headgate's side of the README's Traefik recipe is tested
// behind a stand-in that does what Traefik's documentation says forwardAuth (with
// authResponseHeadersRegex) and the errors middleware do, configured from the README's block.

// traefikRecipe is what the stand-in reads from the README's Traefik block.
type traefikRecipe struct {
	HTTP struct {
		Middlewares struct {
			Headgate struct {
				ForwardAuth struct {
					Address                  string `yaml:"address"`
					AuthResponseHeadersRegex string `yaml:"authResponseHeadersRegex"`
				} `yaml:"forwardAuth"`
			} `yaml:"headgate"`
			Signin struct {
				Errors struct {
					Status []string `yaml:"status"`
					Query  string   `yaml:"query"`
				} `yaml:"errors"`
			} `yaml:"headgate-signin"`
		} `yaml:"middlewares"`
	} `yaml:"http"`
}

// traefikStandIn routes /oauth2/ to headgate and everything else through forwardAuth to the
// upstream, serving headgate's sign-in page for a 401 with the 401 kept, as the errors
// middleware does.
type traefikStandIn struct {
	headgate, upstream *url.URL
	strip              *regexp.Regexp
	signIn             string // the errors middleware's query, with {url}
	toHeadgate, toApp  *httputil.ReverseProxy
}

func newTraefikStandIn(t *testing.T, headgate, upstream string) *traefikStandIn {
	t.Helper()
	var r traefikRecipe
	if err := yaml.Unmarshal([]byte(readmeBlock(t, "# Traefik dynamic configuration: headgate in front of the app at app.example.com")), &r); err != nil {
		t.Fatalf("the README's Traefik block: %v", err)
	}
	fa, errs := r.HTTP.Middlewares.Headgate.ForwardAuth, r.HTTP.Middlewares.Signin.Errors
	if fa.Address != "http://127.0.0.1:4180/oauth2/auth" || len(errs.Status) != 1 || errs.Status[0] != "401" {
		t.Fatalf("the README's Traefik block: forwardAuth %+v, errors %+v", fa, errs)
	}
	s := &traefikStandIn{signIn: errs.Query, strip: regexp.MustCompile(fa.AuthResponseHeadersRegex)}
	s.headgate, _ = url.Parse(headgate)
	s.upstream, _ = url.Parse(upstream)
	keepHost := func(target *url.URL) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host }}
	}
	s.toHeadgate, s.toApp = keepHost(s.headgate), keepHost(s.upstream)
	return s
}

func (s *traefikStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/oauth2/") {
		s.toHeadgate.ServeHTTP(w, r)
		return
	}
	auth, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.headgate.String()+"/oauth2/auth", nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	auth.Header = r.Header.Clone()
	auth.Header.Set("X-Forwarded-Method", r.Method)
	auth.Header.Set("X-Forwarded-Host", r.Host)
	auth.Header.Set("X-Forwarded-Uri", r.URL.RequestURI())
	resp, err := http.DefaultTransport.RoundTrip(auth)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		for name := range r.Header {
			if s.strip.MatchString(name) {
				delete(r.Header, name)
			}
		}
		for name, values := range resp.Header {
			if s.strip.MatchString(name) {
				r.Header[name] = values
			}
		}
		s.toApp.ServeHTTP(w, r)
	case resp.StatusCode == http.StatusUnauthorized:
		page, err := http.Get(s.headgate.String() + strings.ReplaceAll(s.signIn, "{url}", url.QueryEscape(r.URL.String())))
		if err == nil && page.StatusCode != http.StatusOK {
			page.Body.Close()
			err = errors.New("the sign-in page answered " + page.Status)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer page.Body.Close()
		w.Header().Set("Content-Type", page.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusUnauthorized)
		io.Copy(w, page.Body)
	default:
		for name, values := range resp.Header {
			w.Header()[name] = values
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
}

// TestTraefikRecipeHeadgateSide: behind the stand-in, a browser is sent to sign in from the 401
// page and comes back to the page it asked for; a signed-in client's copies of headgate's
// headers, in any spelling, and headgate's cookies never reach the app.
func TestTraefikRecipeHeadgateSide(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	port, err := s.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	front := "http://" + testbed.HostPort(port)
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{"public_url": front}})
	l, err := net.Listen("tcp", testbed.HostPort(port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newTraefikStandIn(t, g.URL, s.Upstream.URL)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	// In Chromium: the errors middleware's 401 page goes on to sign in by itself.
	b, tab := startBrowser(t)
	if err := b.Navigate(tab, front+"/traefik/app?x=1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, s.Issuer+"/"); err != nil {
		t.Fatal(err)
	}
	if err := b.DexLogin(tab, testbed.Bob.Email, testbed.Bob.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitURL(tab, front+"/traefik/app?x=1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(tab, "h1", "The upstream received GET /traefik/app?x=1"); err != nil {
		t.Fatal(err)
	}

	// A signed-in client spoofing every family in several spellings.
	jar := newJar(t)
	if page, err := testbed.BrowserLogin(t.Context(), jar, front+"/oauth2/start?rd=%2Ftraefik%2Fin", testbed.Bob.Email, testbed.Bob.Password); err != nil || page.Status != http.StatusOK {
		t.Fatalf("sign-in through the stand-in: %v", err)
	}
	cookie := sessionCookies(t, g, jar) // the jar keeps 127.0.0.1's cookies for every port
	if cookie == "" {
		t.Fatal("the sign-in through the stand-in left no session cookie")
	}
	spoof := http.Header{"Cookie": {"theme=dark; " + cookie}}
	for _, name := range []string{"X-Headscale-User-Id", "x-headscale-user", "X_Headscale_User_Id", "X-Headscale-Groups",
		"X-Forwarded-User", "X_Forwarded_Email", "X-Forwarded-Preferred-Username", "X-Auth-Request-User", "Remote-User", "remote_user"} {
		spoof[name] = []string{"mallory", "root"}
	}
	if page := fetchURL(t, front+"/traefik/spoof", spoof); page.Status != http.StatusOK {
		t.Fatalf("signed-in request through the stand-in: got %d", page.Status)
	}
	got := upstreamSaw("/traefik/spoof")
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests, want 1", len(got))
	}
	for name, values := range got[0].Header {
		for _, v := range values {
			if v == "mallory" || v == "root" {
				t.Errorf("the upstream received the client's %s: %q", name, v)
			}
		}
	}
	if v := got[0].Header.Get("X-Headscale-User-Id"); v != accounts.Bob.ID {
		t.Errorf("X-Headscale-User-Id: got %q, want %s", v, accounts.Bob.ID)
	}
	if c := got[0].Header.Get("Cookie"); c != "theme=dark" {
		t.Errorf("the upstream's Cookie: got %q, want only theme=dark", c)
	}
}

// fetchURL sends one GET to rawURL with header and returns the answer without following
// redirects.
func fetchURL(t *testing.T, rawURL string, header http.Header) *testbed.Page {
	t.Helper()
	page, err := testbed.Fetch(t.Context(), nil, http.MethodGet, rawURL, header)
	if err != nil {
		t.Fatal(err)
	}
	return page
}
