package e2e

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// TestHostileRequests sends what a hostile or broken client sends to the real binary, each row
// stating what must happen: oversized headers and cookies, duplicated session cookies, a burst
// of concurrent sign-ins, and slow clients holding connections open.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	cookie := loginCookie(t, g, testbed.Alice, prefix+"login")
	value := strings.TrimPrefix(cookie, "_headgate=")
	if value == cookie {
		t.Fatalf("the session cookie is not _headgate: %q", strings.SplitN(cookie, "=", 2)[0])
	}
	huge := strings.Repeat("A", 8<<10)

	cases := []struct {
		name   string
		header http.Header
		// want is the status; wantLocation, when set, the start of the Location header.
		want         int
		wantLocation string
		// reaches says whether the request must reach the upstream.
		reaches bool
	}{
		{"header over 64 KiB", http.Header{"Cookie": {cookie}, "X-Big": {strings.Repeat("b", 80<<10)}},
			http.StatusRequestHeaderFieldsTooLarge, "", false},
		{"many headers over 64 KiB", manyHeaders(cookie, 2000, 40), http.StatusRequestHeaderFieldsTooLarge, "", false},
		{"oversized session cookie, API", http.Header{"Cookie": {"_headgate=" + huge}, "Accept": {"application/json"}},
			http.StatusUnauthorized, "", false},
		{"oversized session cookie, browser", http.Header{"Cookie": {"_headgate=" + huge}, "Accept": {testbed.BrowserAccept}},
			http.StatusFound, "/oauth2/start?", false},
		{"oversized login cookie beside the session", http.Header{"Cookie": {cookie + "; _headgate_login_x=" + huge}, "Accept": {"application/json"}},
			http.StatusOK, "", true},
		{"bogus session cookie before the valid one", http.Header{"Cookie": {"_headgate=bogus; " + cookie}, "Accept": {"application/json"}},
			http.StatusOK, "", true},
		{"valid session cookie before a bogus one", http.Header{"Cookie": {cookie + "; _headgate=bogus"}, "Accept": {"application/json"}},
			http.StatusOK, "", true},
		{"oversized and valid session cookies in two lines", http.Header{"Cookie": {"_headgate=" + huge, cookie}, "Accept": {"application/json"}},
			http.StatusOK, "", true},
		{"truncated session cookie", http.Header{"Cookie": {"_headgate=" + value[:len(value)/2]}, "Accept": {"application/json"}},
			http.StatusUnauthorized, "", false},
		{"two bogus session cookies", http.Header{"Cookie": {"_headgate=bogus; _headgate=" + value + "x"}, "Accept": {"application/json"}},
			http.StatusUnauthorized, "", false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := prefix + "row" + strconv.Itoa(i)
			page, err := g.Fetch(t.Context(), nil, http.MethodGet, path, c.header)
			if err != nil {
				t.Fatal(err)
			}
			if page.Status != c.want {
				t.Errorf("got %d, want %d (%q)", page.Status, c.want, firstLine(page.Body))
			}
			if loc := page.Header.Get("Location"); c.wantLocation != "" && !strings.HasPrefix(loc, c.wantLocation) {
				t.Errorf("Location: got %q, want %s...", loc, c.wantLocation)
			}
			got := upstreamSaw(path)
			if c.reaches && len(got) != 1 {
				t.Errorf("the upstream received %d requests, want 1", len(got))
			} else if c.reaches {
				checkIdentity(t, got[0].Header, testbed.Alice, accounts.Alice)
			}
			if !c.reaches && len(got) != 0 {
				t.Errorf("the upstream received %d requests, want none", len(got))
			}
		})
	}

	t.Run("burst of concurrent sign-ins", func(t *testing.T) {
		// Every person of the stack's Dex, six browsers each, all at once. The linked ones
		// reach the upstream; Carol (no user) and Erin (unverified email) get the 403 page.
		const browsers = 6
		want := map[string]int{testbed.Alice.Email: http.StatusOK, testbed.Bob.Email: http.StatusOK, testbed.Dave.Email: http.StatusOK,
			testbed.Carol.Email: http.StatusForbidden, testbed.Erin.Email: http.StatusForbidden}
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string][]int{}
		start := time.Now()
		for _, u := range testbed.People() {
			for i := range browsers {
				wg.Go(func() {
					status := 0
					page, err := g.Login(t.Context(), newJar(t), u.Email, u.Password, prefix+"burst/"+u.Username+"/"+strconv.Itoa(i))
					if err != nil {
						t.Errorf("%s, browser %d: %v", u.Email, i, err)
					} else {
						status = page.Status
					}
					mu.Lock()
					got[u.Email] = append(got[u.Email], status)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		t.Logf("%d concurrent sign-ins took %s", len(testbed.People())*browsers, time.Since(start).Round(time.Millisecond))
		for email, statuses := range got {
			for _, s := range statuses {
				if s != want[email] {
					t.Errorf("%s: got statuses %v, want %d each", email, statuses, want[email])
					break
				}
			}
		}
		for _, u := range []testbed.User{testbed.Alice, testbed.Bob, testbed.Dave} {
			if n := len(upstreamSaw(prefix + "burst/" + u.Username + "/")); n != browsers {
				t.Errorf("%s: the upstream received %d requests, want %d", u.Email, n, browsers)
			}
		}
	})

	t.Run("slow clients do not block others", func(t *testing.T) {
		// Clients that send part of a request and stop: each holds a connection.
		var conns []net.Conn
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		addr := strings.TrimPrefix(g.URL, "http://")
		for range 50 {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Write([]byte("GET " + prefix + "slow-client HTTP/1.1\r\nHost: " + addr + "\r\nCookie: " + cookie[:20])); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		page := fetch(t, g, nil, http.MethodGet, prefix+"meanwhile", api(cookie))
		if took := time.Since(start); page.Status != http.StatusOK || took > time.Second {
			t.Errorf("a request beside 50 slow clients: got %d in %s, want 200 at once", page.Status, took)
		}
		if got := upstreamSaw(prefix + "slow-client"); len(got) != 0 {
			t.Errorf("the upstream received %d of the partial requests, want none", len(got))
		}
	})
}

// manyHeaders returns cookie and n headers of size bytes each.
func manyHeaders(cookie string, n, size int) http.Header {
	h := http.Header{"Cookie": {cookie}}
	for i := range n {
		h["X-Filler-"+strconv.Itoa(i)] = []string{strings.Repeat("f", size)}
	}
	return h
}

// firstLine returns the start of body, for messages.
func firstLine(body string) string {
	line, _, _ := strings.Cut(body, "\n")
	if len(line) > 120 {
		line = line[:120]
	}
	return line
}
