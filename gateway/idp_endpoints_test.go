package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func (idp *testIdP) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	writeIdPJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         idp.URL,
		"authorization_endpoint":                         idp.URL + "/authorize",
		"token_endpoint":                                 idp.URL + "/token",
		"jwks_uri":                                       idp.URL + "/jwks",
		"userinfo_endpoint":                              idp.URL + "/userinfo",
		"end_session_endpoint":                           idp.URL + "/end_session",
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{"authorization_code"},
		"subject_types_supported":                        []string{"public"},
		"scopes_supported":                               []string{"openid", "email", "profile"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post"},
		"claims_supported":                               []string{"sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name", "preferred_username"},
	})
}

// serveEndSession ends the provider's session (RP-Initiated Logout): it records the request
// and returns the browser to post_logout_redirect_uri with the state, as real providers do for
// a registered URI of the client named.
func (idp *testIdP) serveEndSession(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	idp.mu.Lock()
	idp.endSessions = append(idp.endSessions, q)
	idp.mu.Unlock()
	back, err := url.Parse(q.Get("post_logout_redirect_uri"))
	if q.Get("client_id") != idp.ClientID || err != nil || !back.IsAbs() {
		http.Error(w, "invalid end-session request", http.StatusBadRequest)
		return
	}
	if state := q.Get("state"); state != "" {
		v := back.Query()
		v.Set("state", state)
		back.RawQuery = v.Encode()
	}
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// EndSessions returns the query of every end-session request so far.
func (idp *testIdP) EndSessions() []url.Values {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return slices.Clone(idp.endSessions)
}

// IDTokens returns every ID token issued so far, oldest first.
func (idp *testIdP) IDTokens() []string {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return slices.Clone(idp.idTokens)
}

func (idp *testIdP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	idp.mu.Lock()
	k := jose.JSONWebKey{Key: &idp.key.PublicKey, KeyID: idp.kid, Algorithm: "RS256", Use: "sig"}
	idp.mu.Unlock()
	writeIdPJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
}

// serveAuthorize validates an authorization request and approves it at once as the current
// user. A request it cannot trust to redirect (or that is malformed) gets a 400 page.
func (idp *testIdP) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if problem := idp.checkAuthorize(q); problem != "" {
		http.Error(w, "invalid authorization request: "+problem, http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(q.Get("redirect_uri"))
	params := back.Query()
	params.Set("state", q.Get("state"))
	params.Set("iss", idp.URL)

	idp.mu.Lock()
	if idp.authzError != "" {
		params.Set("error", idp.authzError)
		params.Set("error_description", "the test provider refused the request")
	} else {
		code := idpRandom()
		idp.codes[code] = &idpCode{
			clientID:    q.Get("client_id"),
			redirectURI: q.Get("redirect_uri"),
			challenge:   q.Get("code_challenge"),
			nonce:       q.Get("nonce"),
			claims:      idpReleasedClaims(idp.user, strings.Fields(q.Get("scope"))),
			expires:     time.Now().Add(idpCodeLifetime),
		}
		params.Set("code", code)
	}
	idp.mu.Unlock()
	back.RawQuery = params.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// checkAuthorize returns what is wrong with an authorization request, or "".
func (idp *testIdP) checkAuthorize(q url.Values) string {
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"} {
		switch len(q[k]) {
		case 0:
			return k + " missing"
		case 1:
		default:
			return k + " repeated"
		}
		if q.Get(k) == "" {
			return k + " empty"
		}
	}
	back, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != idp.ClientID:
		return "unknown client_id"
	case err != nil || (back.Scheme != "http" && back.Scheme != "https") || back.Host == "" || back.Fragment != "" || back.User != nil:
		return "redirect_uri must be an absolute http(s) URL without fragment or user info"
	case q.Get("response_type") != "code":
		return "unsupported response_type"
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		return "scope must contain openid"
	case q.Get("code_challenge_method") != "S256":
		return "code_challenge_method must be S256"
	case len(q.Get("code_challenge")) != 43:
		return "code_challenge must be a base64url SHA-256"
	case q.Has("response_mode") && q.Get("response_mode") != "query":
		return "unsupported response_mode"
	}
	if _, err := base64.RawURLEncoding.DecodeString(q.Get("code_challenge")); err != nil {
		return "code_challenge must be a base64url SHA-256"
	}
	return ""
}

// serveToken redeems an authorization code (RFC 6749 section 4.1.3 with RFC 7636).
func (idp *testIdP) serveToken(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		idpTokenError(w, http.StatusBadRequest, "invalid_request", "body must be form encoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		idpTokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	f := r.PostForm
	for k, vs := range f {
		if len(vs) > 1 {
			idpTokenError(w, http.StatusBadRequest, "invalid_request", k+" repeated")
			return
		}
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the credentials are form encoded before Basic encoding.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if f.Has("client_secret") {
			idpTokenError(w, http.StatusBadRequest, "invalid_request", "more than one client authentication method")
			return
		}
		if f.Has("client_id") && f.Get("client_id") != id {
			idpTokenError(w, http.StatusBadRequest, "invalid_request", "client_id does not match the authenticated client")
			return
		}
	} else {
		id, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if id != idp.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(idp.ClientSecret)) != 1 {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		idpTokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if f.Get("grant_type") != "authorization_code" {
		idpTokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported")
		return
	}

	idp.mu.Lock()
	defer idp.mu.Unlock()
	c := idp.codes[f.Get("code")]
	switch {
	case c == nil || c.clientID != id:
		idpTokenError(w, http.StatusBadRequest, "invalid_grant", "unknown code")
		return
	case c.used:
		// RFC 6749 section 4.1.2: a replayed code revokes what it was exchanged for.
		delete(idp.tokens, c.accessToken)
		idpTokenError(w, http.StatusBadRequest, "invalid_grant", "code already used")
		return
	}
	// Any redemption consumes the code, so its verifier cannot be guessed over many tries.
	c.used = true
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case time.Now().After(c.expires):
		idpTokenError(w, http.StatusBadRequest, "invalid_grant", "code expired")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		idpTokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request")
		return
	case len(f.Get("code_verifier")) < 43 || len(f.Get("code_verifier")) > 128 ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		idpTokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	access := idpRandom()
	idp.tokens[access] = idpAccess{claims: c.claims, expires: time.Now().Add(time.Hour)}
	c.accessToken = access
	raw, err := idp.signIDToken(c, access)
	if err != nil {
		idpTokenError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	idp.idTokens = append(idp.idTokens, raw)
	w.Header().Set("Pragma", "no-cache")
	writeIdPJSON(w, http.StatusOK, map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   3600,
		"id_token":     raw,
	})
}

// signIDToken builds and signs the ID token for a redeemed code. idp.mu is held.
func (idp *testIdP) signIDToken(c *idpCode, access string) (string, error) {
	now := time.Now()
	atHash := sha256.Sum256([]byte(access))
	claims := maps.Clone(c.claims)
	maps.Copy(claims, map[string]any{
		"iss":       idp.URL,
		"aud":       idp.ClientID,
		"azp":       idp.ClientID,
		"exp":       now.Add(10 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"auth_time": now.Unix(),
		"nonce":     c.nonce,
		"at_hash":   base64.RawURLEncoding.EncodeToString(atHash[:16]),
	})
	for _, m := range idp.mutations {
		m(claims)
	}
	return idp.sign(claims)
}

// sign signs claims as a JWT with the provider's current algorithm and key. idp.mu is held.
func (idp *testIdP) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode token claims: %w", err)
	}
	if idp.alg == "none" {
		header, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": idp.kid})
		return base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload) + ".", nil
	}
	key := jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if idp.alg == "HS256" {
		key = jose.SigningKey{Algorithm: jose.HS256, Key: []byte(idp.ClientSecret)}
		opts = opts.WithHeader("kid", idp.kid)
	}
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		return "", fmt.Errorf("create token signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return jws.CompactSerialize()
}

func (idp *testIdP) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	idp.mu.Lock()
	a, ok := idp.tokens[token]
	idp.mu.Unlock()
	if !strings.EqualFold(scheme, "Bearer") || !ok || time.Now().After(a.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid access token", http.StatusUnauthorized)
		return
	}
	writeIdPJSON(w, http.StatusOK, a.claims)
}

// idpScopeClaims names the standard claims a provider releases only for a scope (OIDC Core
// section 5.4); the rest are released with openid.
var idpScopeClaims = map[string]string{
	"email": "email", "email_verified": "email",
	"name": "profile", "family_name": "profile", "given_name": "profile", "middle_name": "profile",
	"nickname": "profile", "preferred_username": "profile", "profile": "profile", "picture": "profile",
	"website": "profile", "gender": "profile", "birthdate": "profile", "zoneinfo": "profile",
	"locale": "profile", "updated_at": "profile",
}

// idpReleasedClaims returns a copy of the user's claims that scopes allow.
func idpReleasedClaims(user map[string]any, scopes []string) map[string]any {
	out := map[string]any{}
	for k, v := range user {
		if s, ok := idpScopeClaims[k]; !ok || slices.Contains(scopes, s) {
			out[k] = v
		}
	}
	return out
}

func idpTokenError(w http.ResponseWriter, status int, code, description string) {
	writeIdPJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeIdPJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// idpRandom returns 256 random bits, base64url encoded: codes, access tokens, the secret.
func idpRandom() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails: crypto/rand panics instead
	return base64.RawURLEncoding.EncodeToString(b)
}
