package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionConfig adds a signed identity assertion to every authenticated request: a JWT (ES256)
// that says who the person is, for upstreams that verify it rather than trust the network path
// alone (as Cloudflare Access's Cf-Access-Jwt-Assertion). Its issuer is PublicURL + "/oauth2";
// its audience is the route's name; it carries sub, email and email_verified (verified emails
// only), headscale_user, headscale_user_id, groups and headscale_groups. An upstream finds the
// keys through PublicURL + "/oauth2/.well-known/openid-configuration", as for any OpenID
// Connect provider.
type AssertionConfig struct {
	// Header names the request header the assertion travels in, such as X-Headgate-Assertion.
	// Empty: no assertion.
	Header string `yaml:"header"`

	// Lifetime is how long an assertion is valid. Each is signed at most once per session and
	// route and reused until a fifth of its life is left. Default 5m.
	Lifetime time.Duration `yaml:"lifetime"`

	// Keys are ECDSA P-256 private keys in PEM (openssl ecparam -name prime256v1 -genkey
	// -noout), such as ${HEADGATE_ASSERTION_KEY}; KeyFiles names files holding them. The first
	// key signs; every key is published, so a new key is added second first and moved to the
	// front once every instance publishes it, and an old one is kept second until the last
	// assertion it signed has expired. Empty: headgate generates keys itself and keeps them,
	// sealed with the session secret, in the session store, one per KeyRotation period, which
	// every instance sharing the store uses alike.
	Keys     []string `yaml:"keys"`
	KeyFiles []string `yaml:"key_files"`

	// KeyRotation is how long a generated key signs before the next one takes over. Default
	// 168h (a week).
	KeyRotation time.Duration `yaml:"key_rotation"`
}

func (c *AssertionConfig) setDefaults() {
	if c.Lifetime == 0 {
		c.Lifetime = 5 * time.Minute
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = 7 * 24 * time.Hour
	}
}

func (c AssertionConfig) validate() []error {
	var errs []error
	if c.Header != "" && (!validHeaderName(c.Header) || slices.Contains(reservedHeaders, canonicalHeader(c.Header))) {
		errs = append(errs, fmt.Errorf("assertion.header: %q cannot carry an assertion", c.Header))
	}
	if c.Lifetime < 0 {
		errs = append(errs, errors.New("assertion.lifetime: must not be negative"))
	}
	if c.KeyRotation < 0 {
		errs = append(errs, errors.New("assertion.key_rotation: must not be negative"))
	} else if c.KeyRotation > 0 && c.KeyRotation < 2*c.Lifetime {
		errs = append(errs, errors.New("assertion.key_rotation: must be at least twice assertion.lifetime"))
	}
	for i, k := range c.Keys {
		if _, err := parseSigningKey([]byte(k)); err != nil {
			errs = append(errs, fmt.Errorf("assertion.keys[%d]: %v", i, err))
		}
	}
	return errs
}

// An asserter signs identity assertions: short-lived JWTs (ES256) that tell an upstream who
// the person is, so that it need not trust the network path alone. Each is signed at most once
// per session and audience and reused until it nears expiry, so the request path mostly costs
// a map lookup. Its keys are published as a JSON Web Key Set. It is safe for concurrent use.
type asserter struct {
	issuer   string
	lifetime time.Duration
	now      func() time.Time

	keys atomic.Pointer[assertionKeys]
	// rotate, when set, makes the keys that follow the current ones once their time is up; nil:
	// the keys never change. A failure is passed to rotateFailed and tried again a minute later,
	// the current keys signing meanwhile.
	rotate       func(now time.Time) (*assertionKeys, error)
	rotateFailed func(error)
	rotating     sync.Mutex

	mu    sync.Mutex
	cache map[assertionFor]signedAssertion
}

// assertionKeys are the keys of one period: one signs, and all are published, so an upstream
// still verifies an assertion signed with the key before and already knows the key after.
type assertionKeys struct {
	signer jose.Signer
	jwks   []byte
	until  time.Time // zero: for ever
}

// newAssertionKeys makes the keys of a period that lasts until until (zero: for ever). keys
// are ECDSA P-256 private keys; the first signs.
func newAssertionKeys(keys []*ecdsa.PrivateKey, until time.Time) (*assertionKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("no signing key")
	}
	ks := &assertionKeys{until: until}
	var set jose.JSONWebKeySet
	for i, k := range keys {
		if k.Curve != elliptic.P256() {
			return nil, errors.New("signing key: not an ECDSA P-256 key")
		}
		pub := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
		thumb, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
		if i == 0 {
			ks.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: pub.KeyID}},
				(&jose.SignerOptions{}).WithType("JWT"))
			if err != nil {
				return nil, fmt.Errorf("signing key: %w", err)
			}
		}
		if !slices.ContainsFunc(set.Keys, func(p jose.JSONWebKey) bool { return p.KeyID == pub.KeyID }) {
			set.Keys = append(set.Keys, pub)
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	ks.jwks = jwks
	return ks, nil
}

// newAsserter makes an asserter whose assertions name issuer and live for lifetime, signed
// with keys.
func newAsserter(issuer string, lifetime time.Duration, now func() time.Time, keys *assertionKeys) *asserter {
	a := &asserter{issuer: issuer, lifetime: lifetime, now: now, cache: make(map[assertionFor]signedAssertion)}
	a.keys.Store(keys)
	return a
}

// currentKeys returns the keys to sign with at now, rotating them first when their period is
// over and no other request is rotating them already.
func (a *asserter) currentKeys(now time.Time) *assertionKeys {
	ks := a.keys.Load()
	if a.rotate == nil || ks.until.IsZero() || now.Before(ks.until) || !a.rotating.TryLock() {
		return ks
	}
	defer a.rotating.Unlock()
	if ks = a.keys.Load(); now.Before(ks.until) {
		return ks // rotated while this request waited for the lock
	}
	next, err := a.rotate(now)
	if err != nil {
		a.rotateFailed(err)
		retry := *ks
		retry.until = now.Add(time.Minute)
		if ks.signer == nil {
			retry.until = now.Add(5 * time.Second) // no key at all yet: try again soon
		}
		a.keys.Store(&retry)
		return &retry
	}
	a.keys.Store(next)
	return next
}

// assertionFor is what an assertion is reused for: one session and one audience.
type assertionFor struct{ session, audience string }

type signedAssertion struct {
	claims  assertionClaims // what was signed, without the times
	token   string
	renewAt time.Time
}

// assertionClaims is what an assertion says about the person, besides the registered claims.
type assertionClaims struct {
	Subject         string
	Email           string // verified, or ""
	HeadscaleUser   string
	HeadscaleUserID string
	Groups          []string // the IdP's
	HeadscaleGroups []string // the Headscale policy's
}

// equal reports whether c and d say the same; it allocates nothing.
func (c assertionClaims) equal(d assertionClaims) bool {
	return c.Subject == d.Subject && c.Email == d.Email && c.HeadscaleUser == d.HeadscaleUser &&
		c.HeadscaleUserID == d.HeadscaleUserID && slices.Equal(c.Groups, d.Groups) &&
		slices.Equal(c.HeadscaleGroups, d.HeadscaleGroups)
}

// maxCachedAssertions bounds the assertions kept for reuse: past it, the expired ones are
// dropped, and if that is not enough, all of them (they are signed again as needed).
const maxCachedAssertions = 100_000

// assertion returns the assertion for a session and audience, signing one when there is none
// to reuse: none yet, one about to expire, or one that says something else about the person.
func (a *asserter) assertion(sessionID, audience string, c assertionClaims) (string, error) {
	now := a.now()
	k := assertionFor{sessionID, audience}
	a.mu.Lock()
	s, ok := a.cache[k]
	a.mu.Unlock()
	if ok && s.claims.equal(c) && now.Before(s.renewAt) {
		return s.token, nil
	}
	token, err := a.sign(audience, c, now)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCachedAssertions {
		for k, s := range a.cache {
			if !now.Before(s.renewAt) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxCachedAssertions {
			clear(a.cache)
		}
	}
	// Renewed when a fifth of its life is left, so an upstream never receives one that expires
	// on the way.
	a.cache[k] = signedAssertion{claims: c, token: token, renewAt: now.Add(a.lifetime - a.lifetime/5)}
	return token, nil
}

func (a *asserter) sign(audience string, c assertionClaims, now time.Time) (string, error) {
	claims := struct {
		jwt.Claims
		Email           string   `json:"email,omitempty"`
		EmailVerified   bool     `json:"email_verified,omitempty"`
		HeadscaleUser   string   `json:"headscale_user,omitempty"`
		HeadscaleUserID string   `json:"headscale_user_id,omitempty"`
		Groups          []string `json:"groups,omitempty"`
		HeadscaleGroups []string `json:"headscale_groups,omitempty"`
	}{
		Claims: jwt.Claims{
			Issuer:    a.issuer,
			Subject:   c.Subject,
			Audience:  jwt.Audience{audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
			Expiry:    jwt.NewNumericDate(now.Add(a.lifetime)),
		},
		Email:           c.Email,
		EmailVerified:   c.Email != "",
		HeadscaleUser:   c.HeadscaleUser,
		HeadscaleUserID: c.HeadscaleUserID,
		Groups:          c.Groups,
		HeadscaleGroups: c.HeadscaleGroups,
	}
	ks := a.currentKeys(now)
	if ks.signer == nil {
		return "", errAssertionKeys
	}
	token, err := jwt.Signed(ks.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return token, nil
}

// Where an upstream finds the keys: go-oidc's NewProvider (and any OpenID Connect library)
// reads issuer + assertionDiscoveryPath and from it the key set at issuer + assertionKeysPath.
const (
	assertionIssuerPath    = "/oauth2"
	assertionDiscoveryPath = "/.well-known/openid-configuration"
	assertionKeysPath      = "/jwks.json"
)

// serveKeys publishes the verification keys as a JSON Web Key Set.
func (a *asserter) serveKeys(w http.ResponseWriter, r *http.Request) {
	ks := a.currentKeys(a.now())
	if ks.jwks == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "assertion keys not loaded yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(ks.jwks)
}

// serveDiscovery answers the discovery document an OpenID Connect library reads to find the
// keys. headgate is not an identity provider: the document only says where the keys are and
// how assertions are signed.
func (a *asserter) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                a.issuer,
		"jwks_uri":                              a.issuer + assertionKeysPath,
		"id_token_signing_alg_values_supported": []string{string(jose.ES256)},
		"subject_types_supported":               []string{"public"},
		"response_types_supported":              []string{"id_token"},
	})
}

// assert returns the identity assertion for p on route rt.
func (g *Gateway) assert(p principal, rt *route) (string, error) {
	c := assertionClaims{
		Subject:         p.session.Subject,
		HeadscaleUser:   p.link.UserName,
		HeadscaleUserID: p.link.UserID,
		Groups:          p.session.Groups,
		HeadscaleGroups: p.headscaleGroups,
	}
	if p.session.EmailVerified {
		c.Email = p.session.Email
	}
	return g.asserter.assertion(p.session.ID, rt.name, c)
}

// errAssertionKeys reports that no key could be loaded to sign an assertion with.
var errAssertionKeys = errors.New("no assertion key loaded yet")

// parseSigningKey reads an ECDSA P-256 private key from PEM: "EC PRIVATE KEY" (SEC 1) or
// "PRIVATE KEY" (PKCS #8), as openssl writes them.
func parseSigningKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want EC PRIVATE KEY or PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key (make one with: openssl ecparam -name prime256v1 -genkey -noout)")
	}
	return ec, nil
}
