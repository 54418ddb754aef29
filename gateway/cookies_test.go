package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestSessionCookiesOfTwoSessions plays a sibling subdomain that planted its own valid session
// cookie beside the browser's: the gateway must use neither, clear the cookie, and log the
// attempt at Warn.
func TestSessionCookiesOfTwoSessions(t *testing.T) {
	e := newTestEnv(t)
	withAlice(e)
	_, mine := e.signedIn(t)
	_, planted := e.signedIn(t)
	one := mine.Name + "=" + mine.Value
	other := planted.Name + "=" + planted.Value

	tests := []struct {
		name   string
		path   string
		cookie string
		want   int
	}{
		{"proxy, planted first", "/api", other + "; " + one, http.StatusUnauthorized},
		{"proxy, planted after", "/api", one + "; " + other, http.StatusUnauthorized},
		{"forward auth", "/oauth2/auth", one + "; " + other, http.StatusUnauthorized},
		{"userinfo", "/oauth2/userinfo", other + "; " + one, http.StatusUnauthorized},
		{"the same cookie twice", "/api", one + "; " + one, http.StatusOK},
		{"beside garbage", "/api", mine.Name + "=garbage; " + one, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.upstream.count()
			resp := e.get(t, tt.path, http.Header{"Cookie": {tt.cookie}, "Accept": {"application/json"}})
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusOK {
				return
			}
			if n := e.upstream.count(); n != before {
				t.Errorf("upstream received %d requests, want none", n-before)
			}
			if !clearsCookie(resp, mine.Name) {
				t.Errorf("got Set-Cookie %q, want %s cleared", resp.Header.Values("Set-Cookie"), mine.Name)
			}
		})
	}
	warned := 0
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "session cookies of two sessions") {
			warned++
		}
	}
	if warned != 4 {
		t.Errorf("got %d Warn lines about two sessions, want 4", warned)
	}
}
