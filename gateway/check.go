package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// The outcomes of a check, each the first word of a line of headgate -check.
const (
	CheckOK   = "OK"
	CheckWarn = "WARN"
	CheckFail = "FAIL"
	CheckSkip = "SKIP"
)

// Finding is one line of headgate -check: its outcome, the configuration key to look at, and
// what was found.
type Finding struct{ Status, Key, Detail string }

// CheckProvider discovers the provider as a sign-in does (go-oidc checks that the document names
// the configured issuer), fetches its signing keys and has its token endpoint judge the
// client's credentials.
// CheckProvider is what headgate -check learns of the identity provider g names.
func CheckProvider(ctx context.Context, g Config) []Finding {
	c := g.OIDC
	client := &http.Client{Timeout: c.Timeout}
	ctx = oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, client), client)
	discoverCtx, cancel := context.WithTimeout(ctx, c.Timeout)
	p, err := oidc.NewProvider(discoverCtx, c.Issuer)
	cancel()
	if err != nil {
		return []Finding{
			{CheckFail, "oidc.issuer", fmt.Sprintf("discovery: %v", err)},
			{CheckSkip, "oidc.client_id, oidc.client_secret", "not checked without discovery"},
		}
	}
	return []Finding{
		{CheckOK, "oidc.issuer", "discovery answered, naming this issuer"},
		checkKeys(ctx, p, client, c.Timeout),
		checkClient(ctx, p, g),
	}
}

// checkKeys fetches the signing keys that discovery names and decodes them as go-oidc does.
func checkKeys(ctx context.Context, p *oidc.Provider, client *http.Client, timeout time.Duration) Finding {
	var d struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&d); err != nil || d.JWKS == "" {
		return Finding{CheckFail, "oidc.issuer", "discovery names no signing keys (jwks_uri)"}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	keys, err := fetchKeys(ctx, client, d.JWKS)
	switch {
	case err != nil:
		return Finding{CheckFail, "oidc.issuer", fmt.Sprintf("signing keys at %s: %v", d.JWKS, err)}
	case len(keys.Keys) == 0:
		return Finding{CheckFail, "oidc.issuer", fmt.Sprintf("signing keys at %s: none", d.JWKS)}
	}
	return Finding{CheckOK, "oidc.issuer", fmt.Sprintf("%d signing keys at %s", len(keys.Keys), d.JWKS)}
}

// fetchKeys reads the key set at jwksURL.
func fetchKeys(ctx context.Context, client *http.Client, jwksURL string) (jose.JSONWebKeySet, error) {
	var keys jose.JSONWebKeySet
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return keys, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return keys, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return keys, fmt.Errorf("answered %s", resp.Status)
	}
	return keys, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&keys)
}

// checkClient has the token endpoint judge the client's credentials. Few providers let every
// client use the client_credentials grant, so it redeems a code that cannot be valid instead:
// a provider authenticates the client before it looks at the code, so invalid_grant means the
// credentials passed and invalid_client (or a 401) that they did not. Any other answer proves
// neither.
func checkClient(ctx context.Context, p *oidc.Provider, g Config) Finding {
	const key = "oidc.client_id, oidc.client_secret"
	endpoint := p.Endpoint()
	endpoint.AuthStyle = authStyle(p)
	conf := oauth2.Config{
		ClientID:     g.OIDC.ClientID,
		ClientSecret: g.OIDC.ClientSecret,
		Endpoint:     endpoint,
		RedirectURL:  strings.TrimSuffix(g.PublicURL, "/") + "/oauth2/callback",
	}
	ctx, cancel := context.WithTimeout(ctx, g.OIDC.Timeout)
	defer cancel()
	_, err := conf.Exchange(ctx, "headgate-check-"+rand.Text())
	var (
		re          *oauth2.RetrieveError
		unreachable *url.Error
	)
	switch {
	case err == nil:
		return Finding{CheckWarn, key, "could not verify: the token endpoint took a made-up code"}
	case errors.As(err, &unreachable):
		return Finding{CheckFail, "oidc.issuer", fmt.Sprintf("token endpoint: %v", err)}
	case !errors.As(err, &re) || re.Response == nil:
		return Finding{CheckWarn, key, fmt.Sprintf("could not verify: %v", err)}
	}
	answer := strings.Join(slices.DeleteFunc([]string{re.Response.Status, re.ErrorCode, re.ErrorDescription}, func(s string) bool { return s == "" }), " ")
	switch {
	case re.ErrorCode == "invalid_client" || re.Response.StatusCode == http.StatusUnauthorized:
		return Finding{CheckFail, key, "refused by the token endpoint: " + answer}
	case re.ErrorCode == "invalid_grant":
		return Finding{CheckOK, key, "accepted by the token endpoint"}
	}
	return Finding{CheckWarn, key, "could not verify: the token endpoint answered " + answer}
}
