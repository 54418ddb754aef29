package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoginCookie(t *testing.T) {
	now := time.Now()
	c := newTestCookies(t, false, secretA)
	state := NewID()
	l := &Login{State: state, Nonce: NewID(), Verifier: strings.Repeat("v", 43), Redirect: "/admin/machines?x=1", Created: now}
	rec := httptest.NewRecorder()
	if err := c.SealLogin(rec, l); err != nil {
		t.Fatal(err)
	}
	ck := rec.Result().Cookies()[0]
	if want := "_headgate_login_" + state[:12]; ck.Name != want {
		t.Errorf("got name %q, want %q", ck.Name, want)
	}
	if !c.IsOwn(ck.Name) {
		t.Errorf("IsOwn(%q): got false, want true", ck.Name)
	}

	got, err := c.OpenLogin(requestWith(ck), state)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != l.State || got.Nonce != l.Nonce || got.Verifier != l.Verifier ||
		got.Redirect != l.Redirect || got.Created.Unix() != l.Created.Unix() {
		t.Errorf("got %+v, want %+v", got, l)
	}

	// Same first 12 characters, so the same cookie name, but another state.
	otherState := state[:12] + strings.Repeat("Z", len(state)-12)
	if _, err := c.OpenLogin(requestWith(ck), otherState); !errors.Is(err, ErrInvalid) {
		t.Errorf("state mismatch: got %v, want %v", err, ErrInvalid)
	}
	if _, err := c.OpenLogin(requestWith(ck), NewID()); !errors.Is(err, ErrNoSession) {
		t.Errorf("no login cookie: got %v, want %v", err, ErrNoSession)
	}

	// A session cookie offered as a login cookie, and the other way round.
	sess := sealed(t, c, &Session{ID: NewID(), ExpiresAt: now.Add(time.Hour)})
	if _, err := c.OpenLogin(requestWith(&http.Cookie{Name: ck.Name, Value: sess.Value}), state); !errors.Is(err, ErrInvalid) {
		t.Errorf("session cookie as login cookie: got %v, want %v", err, ErrInvalid)
	}
	if _, err := c.Open(requestWith(&http.Cookie{Name: sess.Name, Value: ck.Value})); !errors.Is(err, ErrInvalid) {
		t.Errorf("login cookie as session cookie: got %v, want %v", err, ErrInvalid)
	}

	// Two sign-ins in parallel tabs keep separate cookies.
	state2 := NewID()
	rec2 := httptest.NewRecorder()
	if err := c.SealLogin(rec2, &Login{State: state2, Created: now}); err != nil {
		t.Fatal(err)
	}
	both := requestWith(ck, rec2.Result().Cookies()[0])
	for _, s := range []string{state, state2} {
		if got, err := c.OpenLogin(both, s); err != nil || got.State != s {
			t.Errorf("parallel sign-ins: got %v, %v, want the login of state %q", got, err, s)
		}
	}

	c.now = func() time.Time { return now.Add(10*time.Minute + time.Second) }
	if _, err := c.OpenLogin(requestWith(ck), state); !errors.Is(err, ErrExpired) {
		t.Errorf("after the login timeout: got %v, want %v", err, ErrExpired)
	}
}

func TestClearStaleLogins(t *testing.T) {
	c, err := NewCookies(defaulted(Config{Secret: Secrets{strings.Repeat("s", 32)}}), false)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/oauth2/start", nil)
	for i := 0; i < 6; i++ {
		r.AddCookie(&http.Cookie{Name: "_headgate_login_" + strings.Repeat(string(rune('a'+i)), 12), Value: "x"})
	}
	r.AddCookie(&http.Cookie{Name: "_headgate", Value: "session"})
	w := httptest.NewRecorder()
	if got := c.ClearStaleLogins(w, r, 8); got != 0 {
		t.Errorf("under the limit: cleared %d, want 0", got)
	}
	w = httptest.NewRecorder()
	if got := c.ClearStaleLogins(w, r, 4); got != 6 {
		t.Errorf("over the limit: cleared %d, want 6", got)
	}
	for _, k := range w.Result().Cookies() {
		if k.Name == "_headgate" {
			t.Error("the session cookie was cleared")
		}
		if k.MaxAge >= 0 {
			t.Errorf("cookie %s not expired: Max-Age %d", k.Name, k.MaxAge)
		}
	}
}
