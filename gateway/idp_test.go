package gateway

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testIdP is an OpenID Connect provider served by an httptest.Server. It is as strict as a real
// one: the authorization code flow only, PKCE with S256 required, state and nonce required,
// codes bound to client, redirect URI and challenge and redeemable once, and RS256 ID tokens
// whose keys are published at its JWKS endpoint. Its knobs (SetUser, Mutate, SignWith,
// RotateKey, Down, Hang, AuthorizeError) are safe to call while requests are in flight.
type testIdP struct {
	// URL is the issuer: the server's base URL, without a trailing slash.
	URL string
	// ClientID and ClientSecret are the only client the provider knows. They must not change
	// once newTestIdP returns.
	ClientID, ClientSecret string

	srv *httptest.Server

	mu         sync.Mutex
	key        *rsa.PrivateKey
	kid        string
	user       map[string]any
	mutations  []func(claims map[string]any)
	alg        string
	down       bool
	hang       chan struct{} // while not nil, requests wait until it is closed
	authzError string
	codes      map[string]*idpCode
	tokens     map[string]idpAccess
	tokenCalls int
	jwksCalls  int
	// endSessions holds the query of each end-session request.
	endSessions []url.Values
	// idTokens holds each ID token issued, oldest first.
	idTokens []string
}

// idpCode is an issued authorization code and what it was bound to.
type idpCode struct {
	clientID, redirectURI, challenge, nonce string
	claims                                  map[string]any
	expires                                 time.Time
	used                                    bool
	accessToken                             string
}

// idpAccess is an issued access token.
type idpAccess struct {
	claims  map[string]any
	expires time.Time
}

// idpCodeLifetime is how long an authorization code can be redeemed, as at most providers.
const idpCodeLifetime = time.Minute

// idpProcessKey is generated once per test binary: a 2048-bit key costs up to a second.
var idpProcessKey = sync.OnceValue(newIdPKey)

func newIdPKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("generate idp key: %v", err))
	}
	return k
}

// idpKeyID names a key by its RFC 7638 thumbprint, so a rotated key always has a new kid.
func idpKeyID(k *rsa.PrivateKey) string {
	tp, err := (&jose.JSONWebKey{Key: &k.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		panic(fmt.Sprintf("thumbprint idp key: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// newTestIdP starts a provider whose client is "headgate" with a random secret and whose
// current user is alice (sub "alice-sub", email alice@example.com, email_verified true, name
// "Alice Example", preferred_username "alice"). The server is closed when the test ends.
func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	idp := &testIdP{
		ClientID:     "headgate",
		ClientSecret: idpRandom(),
		key:          idpProcessKey(),
		alg:          "RS256",
		codes:        map[string]*idpCode{},
		tokens:       map[string]idpAccess{},
		user: map[string]any{"sub": "alice-sub", "email": "alice@example.com", "email_verified": true,
			"name": "Alice Example", "preferred_username": "alice"},
	}
	idp.kid = idpKeyID(idp.key)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", idp.serveDiscovery)
	mux.HandleFunc("GET /jwks", idp.serveJWKS)
	mux.HandleFunc("GET /authorize", idp.serveAuthorize)
	mux.HandleFunc("POST /token", idp.serveToken)
	mux.HandleFunc("GET /userinfo", idp.serveUserInfo)
	mux.HandleFunc("GET /end_session", idp.serveEndSession)
	mux.HandleFunc("POST /userinfo", idp.serveUserInfo)
	idp.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.mu.Lock()
		switch r.URL.Path {
		case "/token":
			idp.tokenCalls++
		case "/jwks":
			idp.jwksCalls++
		}
		down, hang := idp.down, idp.hang
		idp.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
				return
			}
		}
		if down {
			http.Error(w, "identity provider unavailable", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	// The URL is set before Start so that handlers read it without a race.
	idp.URL = "http://" + idp.srv.Listener.Addr().String()
	idp.srv.Start()
	t.Cleanup(idp.srv.Close)
	return idp
}

// SetUser makes claims the user that every later authorization signs in. claims should carry
// "sub"; the ID token and userinfo get the "email" and "email_verified" claims only when the
// email scope was requested and the standard profile claims (name, preferred_username, ...)
// only with the profile scope, as a real provider releases them; any other claim is always
// released. The map is copied.
func (idp *testIdP) SetUser(claims map[string]any) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.user = maps.Clone(claims)
}

// Mutate adds f to the changes applied to every ID token issued after the call, after the
// provider has filled in all claims (iss, aud, sub, exp, iat, nonce, ...) and before signing.
// Mutations accumulate in call order; they do not affect userinfo.
func (idp *testIdP) Mutate(f func(claims map[string]any)) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.mutations = append(idp.mutations, f)
}

// SignWith sets how later ID tokens are signed: "RS256" (the default) with the key the JWKS
// publishes, "HS256" with the client secret as the HMAC key (the algorithm-confusion attack),
// or "none" for an unsigned token with an empty signature. Both hostile forms keep the RSA
// key's kid in their header. Any other alg panics.
func (idp *testIdP) SignWith(alg string) {
	if alg != "RS256" && alg != "HS256" && alg != "none" {
		panic("testIdP.SignWith: unsupported alg " + alg)
	}
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.alg = alg
}

// RotateKey replaces the signing key with a freshly generated one under a new kid. From then on
// the JWKS serves only the new key, so tokens signed before the rotation no longer verify.
func (idp *testIdP) RotateKey() {
	k := newIdPKey()
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.key, idp.kid = k, idpKeyID(k)
}

// Down makes every endpoint answer 503 while down is true, as during a provider outage.
func (idp *testIdP) Down(down bool) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.down = down
}

// Hang makes every request wait without an answer while hang is true, as a provider that
// accepts connections but is stuck; the requests waiting go on when it is set false, or when
// their client gives up. The test's end releases them.
func (idp *testIdP) Hang(t testing.TB, hang bool) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	switch {
	case hang && idp.hang == nil:
		idp.hang = make(chan struct{})
		t.Cleanup(func() { idp.Hang(t, false) })
	case !hang && idp.hang != nil:
		close(idp.hang)
		idp.hang = nil
	}
}

// AuthorizeError makes later valid authorization requests redirect back with ?error=code, an
// error_description and the state instead of a code, as when the user denies consent
// ("access_denied"). An empty code restores normal sign-ins.
func (idp *testIdP) AuthorizeError(code string) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.authzError = code
}

// TokenCalls reports how many requests reached the token endpoint, including refused ones and
// those answered 503 while Down.
func (idp *testIdP) TokenCalls() int {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return idp.tokenCalls
}

// LogoutToken signs a back-channel logout token as the provider would send it: issuer,
// audience, iat, exp (two minutes), a fresh jti and the logout event, then the claims given
// (a nil value removes a claim), signed as SignWith says.
func (idp *testIdP) LogoutToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"iss":    idp.URL,
		"aud":    idp.ClientID,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    idpRandom(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	idp.mu.Lock()
	defer idp.mu.Unlock()
	raw, err := idp.sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// JWKSCalls reports how many requests reached the key set endpoint.
func (idp *testIdP) JWKSCalls() int {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return idp.jwksCalls
}

// newBrowser returns a client that keeps cookies and follows redirects, as a browser does.
func newBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// login navigates client to startURL as a browser would (Accept: text/html, Sec-Fetch-Mode:
// navigate) and follows every redirect: the gateway's redirect to the provider, the provider's
// automatic approval as the current user, the gateway's callback and its redirect to the
// target. It returns the final response, whatever its status; the caller closes its body.
func (idp *testIdP) login(t *testing.T, client *http.Client, startURL string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, startURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("login at %s: %v", startURL, err)
	}
	return resp
}
