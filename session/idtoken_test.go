package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestIDTokenCookie(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	for _, tt := range []struct {
		name   string
		domain string
		secure bool
		cookie string
	}{
		{"http", "", false, "_headgate_idtoken"},
		{"https host-only", "", true, "__Host-_headgate_idtoken"},
		{"https with cookie_domain", "example.com", true, "_headgate_idtoken"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCookies(defaulted(Config{Secret: []string{secret}, CookieDomain: tt.domain}), tt.secure)
			if err != nil {
				t.Fatal(err)
			}
			raw := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("x", 1200) + ".sig"
			rec := httptest.NewRecorder()
			if err := c.SealIDToken(rec, raw, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			set := rec.Result().Cookies()
			if len(set) != 1 {
				t.Fatalf("got %d cookies, want 1", len(set))
			}
			ck := set[0]
			if ck.Name != tt.cookie || ck.Path != "/" || !ck.HttpOnly || ck.Secure != tt.secure ||
				ck.SameSite != http.SameSiteLaxMode || ck.MaxAge < 3590 || ck.MaxAge > 3600 {
				t.Errorf("got %+v, want %s, Path=/, HttpOnly, Secure %v, SameSite=Lax, an hour", ck, tt.cookie, tt.secure)
			}
			if strings.Contains(ck.Value, "eyJ") {
				t.Errorf("the cookie holds the token in the clear: %s", ck.Value)
			}
			if !c.IsOwn(ck.Name) {
				t.Errorf("IsOwn(%q): got false, want true", ck.Name)
			}
			checkPrefixRules(t, rec.Header())
			if got, err := c.OpenIDToken(requestWith(ck)); err != nil || got != raw {
				t.Errorf("OpenIDToken: got %.20q, %v, want the sealed token", got, err)
			}

			// Neither another purpose's sealed value nor a session cookie opens as one.
			failure, err := c.SealValue("sign-in failure page", []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			s := sealed(t, c, &Session{ID: NewID(), ExpiresAt: time.Now().Add(time.Hour)})
			for _, v := range []string{failure, s.Value, "x"} {
				r := requestWith(&http.Cookie{Name: tt.cookie, Value: v})
				if _, err := c.OpenIDToken(r); !errors.Is(err, ErrInvalid) {
					t.Errorf("OpenIDToken of a foreign value: got %v, want ErrInvalid", err)
				}
			}
			if _, err := c.OpenIDToken(requestWith(s)); !errors.Is(err, ErrNoSession) {
				t.Errorf("OpenIDToken without the cookie: got %v, want ErrNoSession", err)
			}

			rec = httptest.NewRecorder()
			c.ClearIDToken(rec, requestWith(s))
			if got := rec.Result().Cookies(); len(got) != 0 {
				t.Errorf("ClearIDToken of a request without the cookie: got %v, want nothing set", got)
			}
			rec = httptest.NewRecorder()
			c.ClearIDToken(rec, requestWith(ck))
			if got := rec.Result().Cookies(); len(got) != 1 || got[0].Name != tt.cookie || got[0].MaxAge >= 0 {
				t.Errorf("ClearIDToken: got %v, want %s expired", got, tt.cookie)
			}
		})
	}
}

func TestIDTokenCookieTooLarge(t *testing.T) {
	c := newTestCookies(t, true, "0123456789abcdef0123456789abcdef")
	rec := httptest.NewRecorder()
	err := c.SealIDToken(rec, strings.Repeat("x", 3000), time.Now().Add(time.Hour))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("got %v, want ErrTooLarge", err)
	}
	if got := rec.Result().Cookies(); len(got) != 0 {
		t.Errorf("got %v set, want nothing", got)
	}
}
