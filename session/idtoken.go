package session

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The ID-token cookie keeps the raw ID token a session was signed in with, sealed, for one use:
// the id_token_hint of a sign-out at the identity provider (OpenID Connect RP-Initiated
// Logout), which some providers require. It is named after the session cookie with the suffix
// "_idtoken" ("__Host-_headgate_idtoken" by default on https), has Path=/ so that sign-out
// paths outside /oauth2/ receive it, and is one of the gateway's own cookies (IsOwn), so it
// never reaches an upstream. Nothing on the way to an upstream opens it.

const (
	idTokenSuffix  = "_idtoken"
	idTokenPurpose = "id token hint"
)

// ErrTooLarge is returned by SealIDToken when the sealed token would not fit in a cookie.
var ErrTooLarge = errors.New("too large for a cookie")

// SealIDToken sets the ID-token cookie to raw, sealed with the session secrets; it lasts until
// expires, the end of the session it belongs to. When the cookie would be larger than a
// browser keeps, it sets nothing and returns an error wrapping ErrTooLarge.
func (c *Cookies) SealIDToken(w http.ResponseWriter, raw string, expires time.Time) error {
	maxAge := secondsUntil(expires, c.now())
	if maxAge <= 0 {
		return errors.New("seal id token: already expired")
	}
	value, err := c.SealValue(idTokenPurpose, []byte(raw))
	if err != nil {
		return err
	}
	name := c.name + idTokenSuffix
	if n := len(name) + len(value); n > maxCookieLen {
		return fmt.Errorf("seal id token: %d bytes: %w", n, ErrTooLarge)
	}
	http.SetCookie(w, c.cookie(name, value, maxAge))
	return nil
}

// OpenIDToken returns the ID token of r's ID-token cookie. It answers ErrNoSession without the
// cookie and ErrInvalid when no cookie of that name opens.
func (c *Cookies) OpenIDToken(r *http.Request) (string, error) {
	values := cookieValues(nil, r.Header, c.name+idTokenSuffix)
	if len(values) == 0 {
		return "", fmt.Errorf("id token cookie: %w", ErrNoSession)
	}
	for _, v := range values {
		if len(v) > maxCookieLen {
			continue
		}
		if raw, err := c.OpenValue(idTokenPurpose, v); err == nil {
			return string(raw), nil
		}
	}
	return "", fmt.Errorf("id token cookie: %w", ErrInvalid)
}

// ClearIDToken expires the ID-token cookie when r carries one.
func (c *Cookies) ClearIDToken(w http.ResponseWriter, r *http.Request) {
	name := c.name + idTokenSuffix
	if len(cookieValues(nil, r.Header, name)) > 0 {
		http.SetCookie(w, c.cookie(name, "", -1))
	}
}
