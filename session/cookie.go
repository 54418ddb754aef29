package session

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

// Session is what a signed-in browser carries in its session cookie. Times are kept to the
// second.
type Session struct {
	// ID is random and names the server-side record.
	ID string
	// Issuer and Subject identify the person at the identity provider; the other identity
	// fields are claims of the ID token at sign-in.
	Issuer            string
	Subject           string
	Email             string
	EmailVerified     bool
	Name              string
	PreferredUsername string
	IssuedAt          time.Time
	// ExpiresAt ends the session: Open answers ErrExpired from then on.
	ExpiresAt time.Time
	// Groups are the person's groups at the identity provider at sign-in, from the claim the
	// gateway is configured to read; nil when it reads none or the person has none.
	Groups []string

	// ProviderSession is the identity provider's session at sign-in (the ID token's sid
	// claim), or empty. Stores index sessions by it for RevokeProviderSessions; it is not
	// sealed into the cookie, so an opened cookie's Session has it empty.
	ProviderSession string
}

// Login is what one sign-in attempt keeps in its login cookie until the identity provider
// sends the browser back.
type Login struct {
	// State is the OAuth state; the login cookie's name is derived from it.
	State    string
	Nonce    string
	Verifier string
	// Redirect is where the browser goes after signing in.
	Redirect string
	Created  time.Time
}

// Cookies seals and opens the session cookie and the login cookies. It is safe for concurrent
// use.
type Cookies struct {
	name        string // the session cookie's name, with the __Host- prefix where it applies
	loginPrefix string // name + "_login_"
	// legacy is the name without the prefix when NewCookies added it, else empty: a cookie of
	// that name is from before the switch, or planted, and is refused and cleared.
	legacy string
	// base and baseLogin are both names without any __Host- prefix; IsOwn compares with them.
	base         string
	baseLogin    string
	domain       string
	secure       bool
	lifetime     time.Duration
	loginTimeout time.Duration
	codecs       []securecookie.Codec // session cookies, MaxAge = lifetime
	loginCodecs  []securecookie.Codec // login cookies, MaxAge = login timeout
	valueCodecs  []securecookie.Codec // SealValue, no MaxAge
	cache        *openCache           // nil: every Open decodes
	now          func() time.Time
}

// MAC names bind each sealed value to its purpose, so a session cookie cannot be replayed as a
// login cookie or the other way round.
const (
	macSession = "session"
	macLogin   = "login"
)

// HKDF info strings: one hash key and one block key per secret.
const (
	infoHashKey  = "headgate session cookie hmac-sha256 key"
	infoBlockKey = "headgate session cookie aes-256 key"
)

const (
	// maxCookieLen is the longest cookie value accepted or produced: browsers store at most
	// 4096 bytes per cookie, name included.
	maxCookieLen = 4000
	// cacheSize bounds the opened-cookie cache; at about 600 bytes a value it stays near 10 MB.
	cacheSize = 10000
	// loginStateLen is how much of the state names a login cookie: enough to keep parallel
	// sign-ins apart, short enough to keep the name short.
	loginStateLen = 12
	// hostPrefix makes a browser keep a cookie only if it is Secure, has Path=/ and no Domain,
	// and was set by the host itself: no sibling subdomain can set or overwrite such a cookie.
	hostPrefix = "__Host-"
)

// NewCookies validates cfg (its defaults applied, see SetDefaults) and derives the cookie keys
// from each secret.
// secure sets the Secure attribute, which is right whenever the public URL is https. The
// secrets must already be read: a config with only secret_file set is an error here.
//
// When secure is set and cfg has no cookie_domain, the cookies are named with the __Host-
// prefix (the session cookie "__Host-_headgate" and the login cookies
// "__Host-_headgate_login_<state>" by default), so that no other host, a sibling subdomain
// included, can plant a session cookie the browser sends to this one. A cookie_name that
// already starts with __Host- is used as it is, and needs secure. Without secure, or with a
// cookie_domain, the configured name is used unchanged.
//
// A session cookie set under the unprefixed name before the switch (or planted under it) is no
// longer accepted: Open answers ErrInvalid for it, Clear expires it too, and its owner signs in
// again once.
func NewCookies(cfg Config, secure bool) (*Cookies, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("session config: secret: required (secret_file was not read)")
	}
	if strings.HasPrefix(cfg.CookieName, hostPrefix) && !secure {
		return nil, errors.New("session config: cookie_name: a __Host- name needs an https public_url")
	}
	base := strings.TrimPrefix(cfg.CookieName, hostPrefix)
	name, legacy := cfg.CookieName, ""
	if secure && cfg.CookieDomain == "" && name == base {
		name, legacy = hostPrefix+base, base
	}
	pairs := make([][]byte, 0, 2*len(cfg.Secret))
	for _, secret := range cfg.Secret {
		hashKey, err := hkdf.Key(sha256.New, []byte(secret), nil, infoHashKey, 32)
		if err != nil {
			return nil, fmt.Errorf("derive cookie keys: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, []byte(secret), nil, infoBlockKey, 32)
		if err != nil {
			return nil, fmt.Errorf("derive cookie keys: %w", err)
		}
		pairs = append(pairs, hashKey, blockKey)
	}
	return &Cookies{
		name:         name,
		loginPrefix:  name + "_login_",
		legacy:       legacy,
		base:         base,
		baseLogin:    base + "_login_",
		domain:       cfg.CookieDomain,
		secure:       secure,
		lifetime:     cfg.Lifetime,
		loginTimeout: cfg.LoginTimeout,
		codecs:       newCodecs(pairs, cfg.Lifetime),
		loginCodecs:  newCodecs(pairs, cfg.LoginTimeout),
		valueCodecs:  newValueCodecs(pairs),
		cache:        newOpenCache(cacheSize),
		now:          time.Now,
	}, nil
}

func newCodecs(pairs [][]byte, maxAge time.Duration) []securecookie.Codec {
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		sc := c.(*securecookie.SecureCookie)
		sc.MaxAge(max(1, int(maxAge/time.Second)))
		sc.MaxLength(maxCookieLen)
		sc.SetSerializer(binaryEncoder{})
	}
	return codecs
}

// NewID returns 128 random bits, base64url-encoded without padding.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Lifetime is how long a new session lasts.
func (c *Cookies) Lifetime() time.Duration { return c.lifetime }

// LoginTimeout is how long a sign-in attempt may take.
func (c *Cookies) LoginTimeout() time.Duration { return c.loginTimeout }

// IsOwn reports whether a cookie of this name belongs to the gateway (the session cookie, a
// login cookie or the ID-token cookie), so that it can be kept from the upstream. Both spellings count, with and
// without the __Host- prefix, whichever this configuration sets: a cookie from before the
// switch, from an instance not yet upgraded, or planted under the other name is the gateway's
// too and must not reach the upstream either.
func (c *Cookies) IsOwn(name string) bool {
	name = strings.TrimPrefix(name, hostPrefix)
	return name == c.base || name == c.base+idTokenSuffix || strings.HasPrefix(name, c.baseLogin)
}

// Seal sets the session cookie of s; it lasts until s.ExpiresAt. Seal does not keep s.
func (c *Cookies) Seal(w http.ResponseWriter, s *Session) error {
	maxAge := secondsUntil(s.ExpiresAt, c.now())
	if maxAge <= 0 {
		return fmt.Errorf("seal session: already expired")
	}
	value, err := securecookie.EncodeMulti(macSession, s, c.codecs[0])
	if err != nil {
		return fmt.Errorf("seal session: %w", err)
	}
	if c.cache != nil {
		// The browser will present this value next; sealing already proved it.
		cp := *s
		c.cache.add(value, &cp)
	}
	http.SetCookie(w, c.cookie(c.name, value, maxAge))
	return nil
}

// Open returns the session of the request's session cookie. It answers ErrNoSession without a
// cookie, ErrInvalid when no cookie of that name opens and ErrExpired when the only sessions
// that open have expired. A cookie under the name without the __Host- prefix, when NewCookies
// added the prefix, is never opened: alone, it is answered with ErrInvalid so that the caller
// clears it.
//
// The browser may send several cookies of that name (one may have been set for a parent domain
// or a narrower path by a sibling subdomain). Those that do not open, or whose session has
// expired, are ignored, and copies of one session are one session. When live cookies of two
// different sessions open, Open fails closed with an error wrapping ErrAmbiguous: one of them
// was planted, and which is the browser's own cannot be told, so neither is used.
//
// The returned Session is shared with other requests presenting the same cookie: callers must
// not modify it.
func (c *Cookies) Open(r *http.Request) (*Session, error) {
	var buf [2]string
	values := cookieValues(buf[:0], r.Header, c.name)
	if len(values) == 0 {
		if c.legacy != "" && len(cookieValues(buf[:0], r.Header, c.legacy)) > 0 {
			return nil, fmt.Errorf("session cookie without the %s prefix: %w", hostPrefix, ErrInvalid)
		}
		return nil, ErrNoSession
	}
	now := c.now()
	err := ErrInvalid
	var found *Session
	for _, v := range values {
		s, openErr := c.open(v)
		if openErr != nil {
			continue
		}
		if !now.Before(s.ExpiresAt) {
			if c.cache != nil {
				c.cache.remove(v)
			}
			err = ErrExpired
			continue
		}
		switch {
		case found == nil:
			found = s
		case s.ID != found.ID:
			return nil, fmt.Errorf("%d session cookies: %w", len(values), ErrAmbiguous)
		}
	}
	if found == nil {
		return nil, err
	}
	return found, nil
}

func (c *Cookies) open(value string) (*Session, error) {
	if len(value) > maxCookieLen {
		return nil, ErrInvalid
	}
	if c.cache != nil {
		if s := c.cache.get(value); s != nil {
			return s, nil
		}
	}
	s := new(Session)
	if err := securecookie.DecodeMulti(macSession, value, s, c.codecs...); err != nil {
		return nil, ErrInvalid
	}
	if c.cache != nil {
		c.cache.add(value, s)
	}
	return s, nil
}

// Clear expires the session cookie, and the one under the name without the __Host- prefix when
// NewCookies added it: a session from before the switch then ends in the browser too.
func (c *Cookies) Clear(w http.ResponseWriter) {
	http.SetCookie(w, c.cookie(c.name, "", -1))
	if c.legacy != "" {
		http.SetCookie(w, c.cookie(c.legacy, "", -1))
	}
}

// SealLogin sets the login cookie of l; it lasts for the login timeout.
func (c *Cookies) SealLogin(w http.ResponseWriter, l *Login) error {
	value, err := securecookie.EncodeMulti(macLogin, l, c.loginCodecs[0])
	if err != nil {
		return fmt.Errorf("seal login: %w", err)
	}
	http.SetCookie(w, c.cookie(c.loginName(l.State), value, max(1, int(c.loginTimeout/time.Second))))
	return nil
}

// OpenLogin returns the sign-in attempt whose state is state. It answers ErrNoSession without
// its login cookie, ErrInvalid when the cookie does not open or belongs to another state and
// ErrExpired when the attempt is older than the login timeout.
func (c *Cookies) OpenLogin(r *http.Request, state string) (*Login, error) {
	values := cookieValues(nil, r.Header, c.loginName(state))
	if len(values) == 0 {
		return nil, fmt.Errorf("login cookie: %w", ErrNoSession)
	}
	err := ErrInvalid
	for _, v := range values {
		var l Login
		if len(v) > maxCookieLen {
			continue
		}
		if securecookie.DecodeMulti(macLogin, v, &l, c.loginCodecs...) != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(l.State), []byte(state)) != 1 {
			continue
		}
		if c.now().Sub(l.Created) > c.loginTimeout {
			err = ErrExpired
			continue
		}
		return &l, nil
	}
	return nil, fmt.Errorf("login cookie: %w", err)
}

// ClearLogin expires the login cookie of state.
func (c *Cookies) ClearLogin(w http.ResponseWriter, state string) {
	http.SetCookie(w, c.cookie(c.loginName(state), "", -1))
}

// ClearStaleLogins expires every login cookie r carries when there are more than keep of them.
// Each sign-in attempt leaves one until it completes or expires; a browser that starts many
// (reloads, a loop, a hostile page) would otherwise grow its Cookie header until requests fail.
func (c *Cookies) ClearStaleLogins(w http.ResponseWriter, r *http.Request, keep int) int {
	var names []string
	for _, k := range r.Cookies() {
		if strings.HasPrefix(k.Name, c.loginPrefix) {
			names = append(names, k.Name)
		}
	}
	if len(names) <= keep {
		return 0
	}
	for _, name := range names {
		http.SetCookie(w, c.cookie(name, "", -1))
	}
	return len(names)
}

func (c *Cookies) loginName(state string) string {
	if len(state) > loginStateLen {
		state = state[:loginStateLen]
	}
	return c.loginPrefix + state
}

func (c *Cookies) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   c.domain,
		MaxAge:   maxAge,
		Secure:   c.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// secondsUntil rounds down, so the browser drops the cookie before it would be refused.
func secondsUntil(t, now time.Time) int {
	return int(t.Sub(now) / time.Second)
}
