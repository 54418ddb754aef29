package session

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestCookies(t testing.TB, secure bool, secrets ...string) *Cookies {
	t.Helper()
	c, err := NewCookies(defaulted(Config{Secret: secrets, CookieDomain: "example.com"}), secure)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// realisticSession has values as long as real identity providers produce.
func realisticSession(now time.Time) *Session {
	return &Session{
		ID:                NewID(),
		Issuer:            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
		Subject:           "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2FsAAAAAAAA",
		Email:             "maximilian.mustermann-oberhuber@engineering.example-corporation.com",
		EmailVerified:     true,
		Name:              "Maximilian Alexander Mustermann-Oberhuber von und zu Beispielhausen",
		PreferredUsername: "maximilian.mustermann-oberhuber@example-corporation.com",
		IssuedAt:          now,
		ExpiresAt:         now.Add(12 * time.Hour),
	}
}

// sealed seals s with c and returns the cookie set.
func sealed(t testing.TB, c *Cookies, s *Session) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := c.Seal(rec, s); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("got %d cookies, want 1", len(cookies))
	}
	return cookies[0]
}

func requestWith(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

func sameSession(t *testing.T, got, want *Session) {
	t.Helper()
	if got.ID != want.ID || got.Issuer != want.Issuer || got.Subject != want.Subject ||
		got.Email != want.Email || got.EmailVerified != want.EmailVerified || got.Name != want.Name ||
		got.PreferredUsername != want.PreferredUsername ||
		got.IssuedAt.Unix() != want.IssuedAt.Unix() || got.ExpiresAt.Unix() != want.ExpiresAt.Unix() {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestCookieRoundTrip(t *testing.T) {
	now := time.Now()
	sealer := newTestCookies(t, true, secretA)
	s := realisticSession(now)
	ck := sealed(t, sealer, s)

	// Another instance decodes; the sealing one answers from its cache.
	for name, c := range map[string]*Cookies{"cold": newTestCookies(t, true, secretA), "cached": sealer} {
		got, err := c.Open(requestWith(ck))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameSession(t, got, s)
		again, err := c.Open(requestWith(ck))
		if err != nil {
			t.Fatalf("%s again: %v", name, err)
		}
		if again != got {
			t.Errorf("%s: second Open got a new *Session, want the cached one", name)
		}
	}
	// Seal keeps its own copy.
	s.Email = "changed@example.com"
	got, err := sealer.Open(requestWith(ck))
	if err != nil {
		t.Fatal(err)
	}
	if got.Email == s.Email {
		t.Errorf("got email %q after the caller changed its Session, want the sealed one", got.Email)
	}
}

func TestCookieOpenRejects(t *testing.T) {
	now := time.Now()
	c := newTestCookies(t, false, secretA)
	ck := sealed(t, newTestCookies(t, false, secretA), realisticSession(now))
	other := sealed(t, newTestCookies(t, false, secretB), realisticSession(now))
	flip := func(v string, i int) string {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name  string
		value string
	}{
		{"tampered first byte", flip(ck.Value, 0)},
		{"tampered middle byte", flip(ck.Value, len(ck.Value)/2)},
		{"tampered last MAC byte", flip(ck.Value, len(ck.Value)-5)},
		{"truncated", ck.Value[:len(ck.Value)-4]},
		{"truncated to a few bytes", ck.Value[:10]},
		{"other secret", other.Value},
		{"garbage", "not-a-cookie"},
		{"base64 garbage", base64.URLEncoding.EncodeToString([]byte("1|x|y"))},
		{"empty", ""},
		{"oversized", strings.Repeat("A", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Open(requestWith(&http.Cookie{Name: ck.Name, Value: tt.value}))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want %v", err, ErrInvalid)
			}
		})
	}
	if _, err := c.Open(httptest.NewRequest("GET", "/", nil)); !errors.Is(err, ErrNoSession) {
		t.Errorf("no cookie: got %v, want %v", err, ErrNoSession)
	}
	if _, err := c.Open(requestWith(&http.Cookie{Name: "other", Value: ck.Value})); !errors.Is(err, ErrNoSession) {
		t.Errorf("cookie of another name: got %v, want %v", err, ErrNoSession)
	}
}

func TestCookieRotation(t *testing.T) {
	now := time.Now()
	oldOnly := newTestCookies(t, false, secretA)
	newOnly := newTestCookies(t, false, secretB)
	rotated := newTestCookies(t, false, secretB, secretA)

	s := realisticSession(now)
	got, err := rotated.Open(requestWith(sealed(t, oldOnly, s)))
	if err != nil {
		t.Fatalf("old cookie after rotation: %v", err)
	}
	sameSession(t, got, s)

	fresh := sealed(t, rotated, realisticSession(now))
	if _, err := newOnly.Open(requestWith(fresh)); err != nil {
		t.Errorf("cookie sealed after rotation, opened with the new secret: got %v, want nil", err)
	}
	if _, err := oldOnly.Open(requestWith(fresh)); !errors.Is(err, ErrInvalid) {
		t.Errorf("cookie sealed after rotation, opened with the old secret: got %v, want %v", err, ErrInvalid)
	}
}

func TestCookieExpired(t *testing.T) {
	now := time.Now()
	sealer := newTestCookies(t, false, secretA)
	ck := sealed(t, sealer, realisticSession(now))
	cold := newTestCookies(t, false, secretA)
	later := func() time.Time { return now.Add(12*time.Hour + time.Second) }
	for name, c := range map[string]*Cookies{"cached": sealer, "cold": cold} {
		if _, err := c.Open(requestWith(ck)); err != nil {
			t.Fatalf("%s before expiry: %v", name, err)
		}
		c.now = later
		if _, err := c.Open(requestWith(ck)); !errors.Is(err, ErrExpired) {
			t.Errorf("%s after expiry: got %v, want %v", name, err, ErrExpired)
		}
	}
	past := realisticSession(now.Add(-13 * time.Hour))
	if err := cold.Seal(httptest.NewRecorder(), past); err == nil {
		t.Error("sealing an expired session: got nil, want an error")
	}
}

func TestCookieDuplicates(t *testing.T) {
	now := time.Now()
	s := realisticSession(now)
	good := sealed(t, newTestCookies(t, false, secretA), s)
	// The same session sealed again (by another instance, say) is another value.
	again := sealed(t, newTestCookies(t, false, secretA), s)
	planted := sealed(t, newTestCookies(t, false, secretA), realisticSession(now))
	foreign := sealed(t, newTestCookies(t, false, secretB), realisticSession(now))
	garbage := &http.Cookie{Name: good.Name, Value: "garbage"}
	expiredOther := sealed(t, newTestCookies(t, false, secretA), &Session{ID: NewID(), ExpiresAt: now.Add(time.Minute)})

	tests := []struct {
		name    string
		cookies []*http.Cookie
		later   bool  // open two minutes on, when expiredOther has expired
		want    error // nil: s opens
	}{
		{"same cookie twice", []*http.Cookie{good, good}, false, nil},
		{"same session sealed twice", []*http.Cookie{good, again}, false, nil},
		{"garbage first", []*http.Cookie{garbage, good}, false, nil},
		{"garbage after", []*http.Cookie{good, garbage}, false, nil},
		{"other secret first", []*http.Cookie{foreign, good}, false, nil},
		{"good between garbage and other secret", []*http.Cookie{garbage, good, foreign}, false, nil},
		{"expired other session first", []*http.Cookie{expiredOther, good}, true, nil},
		{"expired other session after", []*http.Cookie{good, expiredOther}, true, nil},
		{"two sessions, planted first", []*http.Cookie{planted, good}, false, ErrAmbiguous},
		{"two sessions, planted after", []*http.Cookie{good, planted}, false, ErrAmbiguous},
		{"two sessions among garbage", []*http.Cookie{garbage, good, foreign, planted}, false, ErrAmbiguous},
		{"two sessions and a copy", []*http.Cookie{good, again, planted}, false, ErrAmbiguous},
		{"none opens", []*http.Cookie{garbage, foreign}, false, ErrInvalid},
		{"only an expired one opens", []*http.Cookie{garbage, expiredOther}, true, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCookies(t, false, secretA)
			if tt.later {
				c.now = func() time.Time { return now.Add(2 * time.Minute) }
			}
			got, err := c.Open(requestWith(tt.cookies...))
			if tt.want != nil {
				if !errors.Is(err, tt.want) || got != nil {
					t.Errorf("got %v, %v, want nil, %v", got, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			sameSession(t, got, s)
		})
	}
}

func TestCookieSize(t *testing.T) {
	c := newTestCookies(t, true, secretA)
	ck := sealed(t, c, realisticSession(time.Now()))
	if n := len(ck.Name) + 1 + len(ck.Value); n >= 1024 {
		t.Errorf("got a %d-byte cookie, want under 1024", n)
	}
	t.Logf("sealed session cookie: %d bytes", len(ck.Value))

	huge := realisticSession(time.Now())
	huge.Name = strings.Repeat("x", 4000)
	if err := c.Seal(httptest.NewRecorder(), huge); err == nil {
		t.Error("sealing a session too big for a cookie: got nil, want an error")
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{true, false} {
		c := newTestCookies(t, secure, secretA)
		now := time.Now()
		check := func(what string, ck *http.Cookie, maxAge int) {
			t.Helper()
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != secure ||
				ck.Path != "/" || ck.Domain != "example.com" {
				t.Errorf("%s (secure %v): got HttpOnly=%v SameSite=%v Secure=%v Path=%q Domain=%q, want HttpOnly, Lax, Secure=%v, /, example.com",
					what, secure, ck.HttpOnly, ck.SameSite, ck.Secure, ck.Path, ck.Domain, secure)
			}
			if ck.MaxAge < maxAge-1 || ck.MaxAge > maxAge {
				t.Errorf("%s: got Max-Age %d, want %d", what, ck.MaxAge, maxAge)
			}
		}
		s := realisticSession(now)
		s.ExpiresAt = now.Add(90 * time.Minute)
		check("session", sealed(t, c, s), 90*60)

		rec := httptest.NewRecorder()
		if err := c.SealLogin(rec, &Login{State: NewID(), Created: now}); err != nil {
			t.Fatal(err)
		}
		check("login", rec.Result().Cookies()[0], 600)

		rec = httptest.NewRecorder()
		c.Clear(rec)
		c.ClearLogin(rec, "state")
		cleared := rec.Result().Cookies()
		if len(cleared) != 2 || cleared[0].Name != "_headgate" || cleared[1].Name != "_headgate_login_state" {
			t.Fatalf("got %v, want the session and the login cookie cleared", cleared)
		}
		for _, ck := range cleared {
			check("cleared "+ck.Name, ck, -1)
		}
	}
}

func TestIsOwn(t *testing.T) {
	names := map[string]bool{
		"_headgate":                    true,
		"_headgate_login_abcdefghijkl": true,
		"_headgate_login_":             true,
		"_headgate2":                   false,
		"_headgate_idtoken":            true,
		"_headgate_idtoken2":           false,
		"_headgat":                     false,
		"session":                      false,
		"_HEADGATE":                    false,
		"":                             false,
		// Both spellings are the gateway's, whichever the configuration sets.
		"__Host-_headgate":                    true,
		"__Host-_headgate_login_abcdefghijkl": true,
		"__Host-_headgate2":                   false,
		"__Host-_headgate_idtoken":            true,
		"__Host-__Host-_headgate":             false,
		"__host-_headgate":                    false,
		"__Host-":                             false,
	}
	for _, cfg := range []struct {
		name   string
		domain string
		secure bool
	}{
		{"http", "", false},
		{"https with cookie_domain", "example.com", true},
		{"https host-only", "", true},
	} {
		c, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}, CookieDomain: cfg.domain}), cfg.secure)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range names {
			if got := c.IsOwn(name); got != want {
				t.Errorf("%s: IsOwn(%q): got %v, want %v", cfg.name, name, got, want)
			}
		}
	}
}

func TestNewCookiesErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"secret file not read": {SecretFile: "secret.txt"},
		"invalid":              {Secret: Secrets{"short"}},
	} {
		if _, err := NewCookies(defaulted(cfg), true); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
	c, err := NewCookies(defaulted(Config{Secret: Secrets{secretA}}), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Lifetime() != 12*time.Hour || c.LoginTimeout() != 10*time.Minute {
		t.Errorf("got lifetime %v and login timeout %v, want 12h0m0s and 10m0s", c.Lifetime(), c.LoginTimeout())
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != 16 {
			t.Fatalf("got %q (%d bytes, %v), want 16 bytes of base64url", id, len(b), err)
		}
		if seen[id] {
			t.Fatalf("got %q twice", id)
		}
		seen[id] = true
	}
}

func BenchmarkOpenCold(b *testing.B) {
	c := newTestCookies(b, true, secretA)
	c.cache = nil
	r := requestWith(sealed(b, c, realisticSession(time.Now())))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenCached(b *testing.B) {
	c := newTestCookies(b, true, secretA)
	r := requestWith(sealed(b, c, realisticSession(time.Now())))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenCachedParallel(b *testing.B) {
	c := newTestCookies(b, true, secretA)
	ck := sealed(b, c, realisticSession(time.Now()))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := requestWith(ck)
		for pb.Next() {
			if _, err := c.Open(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	c := newTestCookies(b, true, secretA)
	c.cache = nil
	s := realisticSession(time.Now())
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.Header())
		if err := c.Seal(w, s); err != nil {
			b.Fatal(err)
		}
	}
}
