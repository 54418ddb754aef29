package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCookieNames(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		secure  bool
		session string
		login   string
		cleared []string // the names Clear expires
	}{
		{"https, host-only", Config{}, true,
			"__Host-_headgate", "__Host-_headgate_login_", []string{"__Host-_headgate", "_headgate"}},
		{"http", Config{}, false,
			"_headgate", "_headgate_login_", []string{"_headgate"}},
		{"https, cookie_domain", Config{CookieDomain: "example.com"}, true,
			"_headgate", "_headgate_login_", []string{"_headgate"}},
		{"http, cookie_domain", Config{CookieDomain: "example.com"}, false,
			"_headgate", "_headgate_login_", []string{"_headgate"}},
		{"https, own name", Config{CookieName: "hg"}, true,
			"__Host-hg", "__Host-hg_login_", []string{"__Host-hg", "hg"}},
		{"https, configured __Host- name", Config{CookieName: "__Host-x"}, true,
			"__Host-x", "__Host-x_login_", []string{"__Host-x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Secret = Secrets{secretA}
			c, err := NewCookies(defaulted(tt.cfg), tt.secure)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			rec := httptest.NewRecorder()
			s := &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)}
			if err := c.Seal(rec, s); err != nil {
				t.Fatal(err)
			}
			state := NewID()
			if err := c.SealLogin(rec, &Login{State: state, Created: now}); err != nil {
				t.Fatal(err)
			}
			set := rec.Result().Cookies()
			if len(set) != 2 {
				t.Fatalf("got %d cookies, want 2", len(set))
			}
			if got := set[0].Name; got != tt.session {
				t.Errorf("session cookie: got %q, want %q", got, tt.session)
			}
			if got, want := set[1].Name, tt.login+state[:loginStateLen]; got != want {
				t.Errorf("login cookie: got %q, want %q", got, want)
			}
			for _, ck := range set {
				if !c.IsOwn(ck.Name) {
					t.Errorf("IsOwn(%q): got false, want true", ck.Name)
				}
			}
			checkPrefixRules(t, rec.Header())

			// What was set opens under its name.
			r := requestWith(set...)
			if got, err := c.Open(r); err != nil || got.ID != s.ID {
				t.Errorf("Open: got %v, %v, want session %s", got, err, s.ID)
			}
			if _, err := c.OpenLogin(r, state); err != nil {
				t.Errorf("OpenLogin: got %v, want nil", err)
			}

			rec = httptest.NewRecorder()
			c.Clear(rec)
			var cleared []string
			for _, ck := range rec.Result().Cookies() {
				cleared = append(cleared, ck.Name)
				if ck.MaxAge >= 0 {
					t.Errorf("cleared %s: got Max-Age %d, want < 0", ck.Name, ck.MaxAge)
				}
			}
			if !slices.Equal(cleared, tt.cleared) {
				t.Errorf("Clear: got %q, want %q", cleared, tt.cleared)
			}
			checkPrefixRules(t, rec.Header())
		})
	}
}

// checkPrefixRules checks every Set-Cookie line in h whose name has the __Host- prefix against
// what a browser requires of it: Secure, Path=/ and no Domain.
func checkPrefixRules(t *testing.T, h http.Header) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		name, _, _ := strings.Cut(line, "=")
		if !strings.HasPrefix(name, "__Host-") {
			continue
		}
		attrs := strings.Split(line, "; ")[1:]
		if !slices.Contains(attrs, "Secure") || !slices.Contains(attrs, "Path=/") {
			t.Errorf("Set-Cookie %s: got %q, want Secure and Path=/", name, attrs)
		}
		for _, a := range attrs {
			if strings.HasPrefix(strings.ToLower(a), "domain") {
				t.Errorf("Set-Cookie %s: got %q, want no Domain", name, a)
			}
		}
	}
}

func TestCookieUnprefixedRefused(t *testing.T) {
	c, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}}), true)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mine := &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)}
	prefixed := sealed(t, c, mine)
	// A value this very configuration sealed, under the name it used before the switch.
	old := &http.Cookie{Name: "_headgate", Value: sealed(t, c, &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)}).Value}

	plain, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}}), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Open(requestWith(old)); err != nil {
		t.Fatalf("the old cookie on http: got %v, want it to open", err)
	}

	tests := []struct {
		name    string
		cookies []*http.Cookie
		want    error // nil: mine opens
	}{
		{"unprefixed alone", []*http.Cookie{old}, ErrInvalid},
		{"unprefixed garbage alone", []*http.Cookie{{Name: "_headgate", Value: "garbage"}}, ErrInvalid},
		{"unprefixed before the prefixed", []*http.Cookie{old, prefixed}, nil},
		{"unprefixed after the prefixed", []*http.Cookie{prefixed, old}, nil},
		{"unprefixed login cookie only", []*http.Cookie{{Name: "_headgate_login_x", Value: "x"}}, ErrNoSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Open(requestWith(tt.cookies...))
			if tt.want != nil {
				if !errors.Is(err, tt.want) || got != nil {
					t.Errorf("got %v, %v, want nil, %v", got, err, tt.want)
				}
				return
			}
			if err != nil || got.ID != mine.ID {
				t.Errorf("got %v, %v, want session %s", got, err, mine.ID)
			}
		})
	}
}

func TestHostPrefixNeedsHTTPS(t *testing.T) {
	if _, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}, CookieName: "__Host-x"}), false); err == nil {
		t.Error("a __Host- cookie_name on http: got nil, want an error")
	}
	if _, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}, CookieName: "__Host-x", CookieDomain: "example.com"}), true); err == nil {
		t.Error("a __Host- cookie_name with cookie_domain: got nil, want an error")
	}
}
