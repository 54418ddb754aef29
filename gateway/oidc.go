package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// errIdPUnavailable marks a failure to reach the identity provider, as opposed to the provider
// refusing a request.
var errIdPUnavailable = errors.New("identity provider unavailable")

// oidcClient discovers the provider on first use and keeps what discovery yields. Discovery is
// retried while it fails; once it succeeds the provider's keys are refreshed by go-oidc's
// remote key set whenever a token names a key it has not seen, so a rotated signing key is
// picked up without a restart.
type oidcClient struct {
	cfg         OIDCConfig
	redirectURL string
	http        *http.Client
	timing      Timing

	mu       sync.Mutex
	ready    *oidcProvider
	failedAt time.Time
	failure  error
	// discovering is closed when the discovery under way ends; nil when none is.
	discovering chan struct{}

	// The provider's last reachability check, so that a sign-in is not sent to a provider
	// that is down (the browser would show a connection error instead of headgate's page).
	probeMu  sync.Mutex
	probedAt time.Time
	probeErr error
}

// reachable reports whether the provider answers its discovery document, checking at most once
// every Timing.Probe (Timing.ProbeFailed after a failure). Its error wraps errIdPUnavailable.
func (c *oidcClient) reachable(ctx context.Context) error {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	reuse := c.timing.Probe
	if c.probeErr != nil {
		reuse = c.timing.ProbeFailed
	}
	if c.timing.Now().Sub(c.probedAt) < reuse {
		return c.probeErr
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.probeErr = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.cfg.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.http.Do(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("discovery answered %s", resp.Status)
			}
		}
	}
	if err != nil {
		c.probeErr = fmt.Errorf("%w: %w", errIdPUnavailable, err)
	}
	c.probedAt = c.timing.Now()
	return c.probeErr
}

// oidcProvider is the result of a successful discovery.
type oidcProvider struct {
	oauth2   oauth2.Config
	verifier *oidc.IDTokenVerifier
	provider *oidc.Provider
	// endSession is the RP-Initiated Logout endpoint, or empty when the provider has none.
	endSession string
	// logoutVerifier checks back-channel logout tokens with logoutKeys, which fetches the
	// provider's keys at a bounded rate.
	logoutVerifier *oidc.IDTokenVerifier
	// undatedLogoutVerifier checks, with the same keys but no expiry, the logout tokens without
	// exp that OIDCConfig.LogoutTokenMaxAge lets in; nil when it is 0.
	undatedLogoutVerifier *oidc.IDTokenVerifier
	logoutKeys            *logoutKeys
}

func newOIDCClient(cfg OIDCConfig, redirectURL string, timing Timing) *oidcClient {
	return &oidcClient{
		cfg:         cfg,
		redirectURL: redirectURL,
		http:        &http.Client{Timeout: cfg.Timeout},
		timing:      timing,
	}
}

// context returns ctx carrying the client that go-oidc and x/oauth2 use for provider calls.
func (c *oidcClient) context(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, c.http), c.http)
}

// get returns the discovered provider, discovering it if needed. Its error wraps
// errIdPUnavailable. Discovery runs on its own, bounded by OIDCConfig.Timeout, and callers wait
// for it only as long as their ctx lets them: a sign-in that gives up early leaves the discovery
// to finish for the next one. Concurrent callers share one discovery.
func (c *oidcClient) get(ctx context.Context) (*oidcProvider, error) {
	c.mu.Lock()
	if c.ready != nil {
		defer c.mu.Unlock()
		return c.ready, nil
	}
	if c.failure != nil && c.timing.Now().Sub(c.failedAt) < c.timing.Rediscover {
		defer c.mu.Unlock()
		return nil, c.failure
	}
	done := c.discovering
	if done == nil {
		done = make(chan struct{})
		c.discovering = done
		go c.discover(done)
	}
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: discover %s: no answer yet: %w", errIdPUnavailable, c.cfg.Issuer, ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready != nil {
		return c.ready, nil
	}
	return nil, c.failure
}

// discover reads the provider's discovery document and keeps what it yields, or the failure,
// then closes done.
func (c *oidcClient) discover(done chan struct{}) {
	// Discovery's context also configures the key set's later fetches, so it must outlive
	// the request that started it: only the client travels with it, bounded by its own timeout.
	ctx := c.context(context.Background())
	p, err := oidc.NewProvider(ctx, c.cfg.Issuer)
	var ready *oidcProvider
	if err == nil {
		ready = c.provider(ctx, p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(done)
	c.discovering = nil
	if err != nil {
		c.failedAt, c.failure = c.timing.Now(), fmt.Errorf("%w: discover %s: %w", errIdPUnavailable, c.cfg.Issuer, err)
		return
	}
	c.ready, c.failure = ready, nil
	// Discovery has just shown the provider answers: the first sign-in need not ask again.
	c.probeMu.Lock()
	c.probedAt, c.probeErr = c.timing.Now(), nil
	c.probeMu.Unlock()
}

// provider builds what headgate keeps of the discovered provider p.
func (c *oidcClient) provider(ctx context.Context, p *oidc.Provider) *oidcProvider {
	endpoint := p.Endpoint()
	endpoint.AuthStyle = authStyle(p)
	var claims struct {
		EndSession string   `json:"end_session_endpoint"`
		JWKS       string   `json:"jwks_uri"`
		Algorithms []string `json:"id_token_signing_alg_values_supported"`
	}
	p.Claims(&claims) // fields a provider leaves out stay empty
	keys := &logoutKeys{url: claims.JWKS, client: c.http, now: c.timing.Now, refresh: c.timing.LogoutKeysRefresh}
	keys.prefetch(ctx)
	var undated *oidc.IDTokenVerifier
	if c.cfg.LogoutTokenMaxAge > 0 {
		undated = oidc.NewVerifier(c.cfg.Issuer, keys,
			&oidc.Config{ClientID: c.cfg.ClientID, SupportedSigningAlgs: claims.Algorithms, SkipExpiryCheck: true})
	}
	return &oidcProvider{
		endSession: claims.EndSession,
		logoutVerifier: oidc.NewVerifier(c.cfg.Issuer, keys,
			&oidc.Config{ClientID: c.cfg.ClientID, SupportedSigningAlgs: claims.Algorithms, Now: c.timing.Now}),
		undatedLogoutVerifier: undated,
		logoutKeys:            keys,
		provider:              p,
		verifier:              p.Verifier(&oidc.Config{ClientID: c.cfg.ClientID, Now: c.timing.Now}),
		oauth2: oauth2.Config{
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  c.redirectURL,
			Scopes:       c.cfg.Scopes,
		},
	}
}

// authStyle picks how the client authenticates at the token endpoint from what discovery
// advertises. Leaving it to x/oauth2's auto-detection would send a second token request after
// every refused exchange.
func authStyle(p *oidc.Provider) oauth2.AuthStyle {
	var d struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&d); err != nil || len(d.Methods) == 0 || slices.Contains(d.Methods, "client_secret_basic") {
		// client_secret_basic is the specification's default.
		return oauth2.AuthStyleInHeader
	}
	if slices.Contains(d.Methods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}
