package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Ory Hydra is the suite's second real identity provider: unlike Dex it implements OpenID
// Connect Back-Channel and RP-Initiated Logout. It is built from the Go module proxy through
// the tools module in tools/hydra (a module of its own: Hydra's dependency graph would move
// the versions the other peers are built with), with SQLite compiled in for its in-memory store.
const (
	hydraPackage = "github.com/ory/hydra/v2"
	// hydraVersion is the release tools/hydra pins; a binary of another release is rebuilt.
	hydraVersion = "v2.3.0"
	hydraTags    = "sqlite,sqlite_omit_load_extension"
)

// hydraBinary returns root/BinDir/hydra, building it when it is missing or its build
// information names another release than hydraVersion (about 4 minutes with an empty module
// and build cache, SQLite's C code among it).
func hydraBinary(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	return toolBuild{module: "hydra", name: "hydra", pkg: hydraPackage, flags: []string{"-tags", hydraTags},
		current: func(path string) bool {
			info, err := buildinfo.ReadFile(path)
			return err == nil && info.Main.Path == hydraPackage && info.Main.Version == hydraVersion
		}}.binary(ctx, root, logf)
}

// Hydra is a running Ory Hydra with its login and consent app, and headgate registered as a
// client. Its exported fields are set by StartHydra and must not be changed.
type Hydra struct {
	// Issuer is Hydra's issuer as its discovery document names it.
	Issuer string
	// AdminURL is the base URL of Hydra's admin API.
	AdminURL string
	// ClientID and ClientSecret are headgate's client at Hydra.
	ClientID, ClientSecret string
	// LogPath is the file that receives Hydra's output.
	LogPath string

	publicURL string
	app       *hydraApp

	mu   sync.Mutex // guards proc
	proc *process
}

// StartHydra builds Hydra when needed, starts it with an in-memory store beside the stack's
// other peers together with its login and consent app (which knows HydraPeople), and
// registers headgate as a client: a callback, a post-logout redirect URI (/oauth2/signed_out)
// for every reserved gateway port, and the first instance's /oauth2/backchannel_logout as
// the back-channel logout URI, with sid required. Close stops both.
func (s *Stack) StartHydra(ctx context.Context) (*Hydra, error) {
	bin, err := hydraBinary(ctx, s.root, s.logf)
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	h := &Hydra{
		AdminURL: "http://" + HostPort(ports[1]),
		LogPath:  filepath.Join(s.Dir, "hydra.log"),
	}
	if h.app, err = startHydraApp(h); err != nil {
		return nil, err
	}
	publicURL := "http://" + HostPort(ports[0])
	env := []string{
		"DSN=memory",
		"URLS_SELF_ISSUER=" + publicURL,
		"URLS_LOGIN=" + h.app.url + "/login",
		"URLS_CONSENT=" + h.app.url + "/consent",
		"URLS_LOGOUT=" + h.app.url + "/logout",
		"URLS_POST_LOGOUT_REDIRECT=" + h.app.url + "/signed_out",
		"SERVE_PUBLIC_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]),
		"SERVE_ADMIN_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]),
		"SECRETS_SYSTEM=" + rand.Text() + rand.Text(),
		"LOG_LEVEL=info",
		"SQA_OPT_OUT=true",
	}
	p, err := startProcessEnv("hydra", s.Dir, h.LogPath, env, bin, "serve", "all", "--dev", "--sqa-opt-out")
	if err != nil {
		h.app.close()
		return nil, err
	}
	h.proc, h.publicURL = p, publicURL
	if err := h.start(ctx, s.gatewayURLs()); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// start waits for Hydra, reads its issuer and registers headgate's client.
func (h *Hydra) start(ctx context.Context, gateways []string) error {
	publicURL := h.publicURL
	if err := h.proc.waitHTTP(ctx, h.AdminURL+"/health/ready", 60*time.Second); err != nil {
		return fmt.Errorf("start hydra: %w", err)
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	if err := getJSON(ctx, publicURL+"/.well-known/openid-configuration", &disc); err != nil {
		return h.proc.failure(fmt.Errorf("read hydra's discovery document: %w", err))
	}
	h.Issuer = disc.Issuer
	// Hydra makes its signing keys on first use, which takes seconds (RSA 4096): longer than
	// headgate's oidc.start_timeout, so the first sign-in would find the provider unreachable.
	var keys struct {
		Keys []json.RawMessage `json:"keys"`
	}
	err := getJSON(ctx, publicURL+"/.well-known/jwks.json", &keys)
	if err == nil && len(keys.Keys) == 0 {
		err = errors.New("no keys")
	}
	if err != nil {
		return h.proc.failure(fmt.Errorf("read hydra's signing keys: %w", err))
	}
	client := map[string]any{
		"client_name":                         "headgate",
		"client_secret":                       rand.Text(),
		"grant_types":                         []string{"authorization_code", "refresh_token"},
		"response_types":                      []string{"code"},
		"scope":                               "openid email profile groups offline_access",
		"token_endpoint_auth_method":          "client_secret_basic",
		"backchannel_logout_uri":              gateways[0] + "/oauth2/backchannel_logout",
		"backchannel_logout_session_required": true,
	}
	var redirects, signedOut []string
	for _, g := range gateways {
		redirects = append(redirects, g+"/oauth2/callback")
		signedOut = append(signedOut, g+"/oauth2/signed_out")
	}
	client["redirect_uris"], client["post_logout_redirect_uris"] = redirects, signedOut
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := h.admin(ctx, http.MethodPost, "/admin/clients", nil, client, &created); err != nil {
		return h.proc.failure(fmt.Errorf("register headgate at hydra: %w", err))
	}
	h.ClientID, h.ClientSecret = created.ClientID, created.ClientSecret
	return nil
}

// gatewayURLs returns the URL of every reserved gateway port, in the order StartGateway uses
// them.
func (s *Stack) gatewayURLs() []string {
	urls := make([]string, len(s.gatewayPorts))
	for i, port := range s.gatewayPorts {
		urls[i] = "http://" + HostPort(port)
	}
	return urls
}

// OIDC returns the oidc section that points a headgate instance at Hydra, for
// GatewayOptions.Extra: the scopes include groups, which Hydra's consent grants the groups
// claim for.
func (h *Hydra) OIDC() map[string]any {
	return map[string]any{
		"issuer":        h.Issuer,
		"client_id":     h.ClientID,
		"client_secret": h.ClientSecret,
		"scopes":        []string{"openid", "email", "profile", "groups"},
	}
}

// Stop ends Hydra (its login and consent app goes on answering). Hydra keeps everything in
// memory: it is not restarted.
func (h *Hydra) Stop() {
	h.mu.Lock()
	p := h.proc
	h.mu.Unlock()
	p.stop()
}

// Close stops Hydra and its login and consent app.
func (h *Hydra) Close() {
	h.Stop()
	h.app.close()
}

// Tail returns the last n lines of Hydra's log.
func (h *Hydra) Tail(n int) string { return tailFile(h.LogPath, n) }

// SessionIDs returns the IDs of the login sessions (the sid of its ID tokens) Hydra began for
// subject, oldest first.
func (h *Hydra) SessionIDs(subject string) []string { return h.app.sessionIDs(subject) }

// RevokeSession ends the login session sid at Hydra through its admin API, which sends a
// back-channel logout naming sid to every client the session signed in to.
func (h *Hydra) RevokeSession(ctx context.Context, sid string) error {
	if err := h.admin(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/login", url.Values{"sid": {sid}}, nil, nil); err != nil {
		return fmt.Errorf("revoke hydra login session: %w", err)
	}
	return nil
}

// RevokeSubject ends every login session of subject at Hydra through its admin API. Hydra
// v2.3.0 sends no back-channel logout for it.
func (h *Hydra) RevokeSubject(ctx context.Context, subject string) error {
	if err := h.admin(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/login", url.Values{"subject": {subject}}, nil, nil); err != nil {
		return fmt.Errorf("revoke hydra login sessions of %s: %w", subject, err)
	}
	return nil
}

// RotateKey adds a new RS256 key to the set Hydra signs ID tokens and logout tokens with;
// Hydra signs with the newest key from then on and keeps publishing the older ones. It
// returns the new key's ID.
func (h *Hydra) RotateKey(ctx context.Context) (string, error) {
	kid := "rotated-" + strings.ToLower(rand.Text()[:8])
	body := map[string]any{"alg": "RS256", "use": "sig", "kid": kid}
	if err := h.admin(ctx, http.MethodPost, "/admin/keys/hydra.openid.id-token", nil, body, nil); err != nil {
		return "", fmt.Errorf("rotate hydra's id token key: %w", err)
	}
	var keys struct {
		Keys []struct {
			KeyID string `json:"kid"`
		} `json:"keys"`
	}
	if err := getJSON(ctx, h.publicURL+"/.well-known/jwks.json", &keys); err != nil {
		return "", fmt.Errorf("rotate hydra's id token key: read the published keys: %w", err)
	}
	for _, k := range keys.Keys {
		if k.KeyID == kid {
			return kid, nil
		}
	}
	return "", fmt.Errorf("rotate hydra's id token key: %s is not among the published keys", kid)
}

// admin calls Hydra's admin API: in (when not nil) is sent as JSON, out (when not nil)
// receives the JSON answer.
func (h *Hydra) admin(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	u := h.AdminURL + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, withoutURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s %s: %w", method, path, err)
	}
	if resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// getJSON decodes the JSON answer of a GET of rawURL into out.
func getJSON(ctx context.Context, rawURL string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return withoutURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
