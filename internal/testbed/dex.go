package testbed

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// User is a person who can sign in at the stack's Dex with Email and Password.
type User struct {
	Email    string
	Password string
	// Username is Dex's preferred_username claim, which Headscale takes as the name of an
	// OIDC user it creates.
	Username string
	// Name is Dex's name claim.
	Name string
	// UserID is Dex's stable ID of the user; the OIDC subject derives from it.
	UserID string
	// EmailVerified is Dex's email_verified claim.
	EmailVerified bool
	// Groups is Dex's groups claim, which Dex sends only to a client that asks for the groups
	// scope. nil: none.
	Groups []string
	// hash is the bcrypt hash of Password (cost 10), computed once so that the suite needs no
	// bcrypt package.
	hash string
}

// Subject returns the sub claim Dex issues for u: base64url of the protobuf message
// {user_id: UserID, conn_id: "local"}.
func (u User) Subject() string {
	msg := protoString(nil, 1, u.UserID)
	msg = protoString(msg, 2, dexConnector)
	return base64.RawURLEncoding.EncodeToString(msg)
}

// protoString appends a protobuf length-delimited field (short values only).
func protoString(b []byte, field int, s string) []byte {
	return append(append(b, byte(field<<3|2), byte(len(s))), s...)
}

// dexConnector is the ID of Dex's built-in password connector.
const dexConnector = "local"

// The people of the stack's Dex. Each plays one part in the suite and the demo.
var (
	// Alice becomes a Headscale OIDC user through Headscale's own login at the same Dex, so
	// she is linked by provider ID. Her groups hold a comma, spaces, a percent sign and a
	// letter beyond ASCII, which a groups header must carry whole.
	Alice = User{Email: "alice@example.com", Password: "alice-demo", Username: "alice", Name: "Alice Anders",
		UserID: "0b3c6a1e-0001-4a4e-9d1e-a11ce0000001", EmailVerified: true,
		Groups: []string{"ops, infra", "headplane-admins", "équipe 100%"},
		hash:   "$2a$10$.IKPukUw7RlshYprptvjIOLJxpTZT3biC5W9W79Su/ZzUomO/QYva"}
	// Bob is a Headscale CLI user "bob" with his email, so he is linked by verified email.
	Bob = User{Email: "bob@example.com", Password: "bob-demo", Username: "bob", Name: "Bob Berg",
		UserID: "0b3c6a1e-0002-4a4e-9d1e-b0b000000002", EmailVerified: true, Groups: []string{"developers"},
		hash: "$2a$10$A8rISCPWSmlF/atmmMuXm.ZIq7NWkl/Rh3MfjY8IwonGbE0CwBafu"}
	// Carol has no Headscale user.
	Carol = User{Email: "carol@example.com", Password: "carol-demo", Username: "carol", Name: "Carol Cruz",
		UserID: "0b3c6a1e-0003-4a4e-9d1e-ca2010000003", EmailVerified: true,
		hash: "$2a$10$1ulIenv/zkjm1RrD5WJ4eeQf8zzV6tPqn9oDMSZVjEJXoI6yFvC1S"}
	// Dave is a Headscale CLI user with his email; an instance that matches by provider ID only
	// must refuse him.
	Dave = User{Email: "dave@example.com", Password: "dave-demo", Username: "dave", Name: "Dave Dorn",
		UserID: "0b3c6a1e-0004-4a4e-9d1e-da7e00000004", EmailVerified: true,
		hash: "$2a$10$EE.YnKt90PMkOdRB0LnS8ujJ5pbNE9I09SlSkUePwDEoLx4cP1Db."}
	// Erin is a Headscale CLI user with her email, but Dex says her email is not verified, so
	// email matching must not link her.
	Erin = User{Email: "erin@example.com", Password: "erin-demo", Username: "erin", Name: "Erin Eck",
		UserID: "0b3c6a1e-0005-4a4e-9d1e-e21200000005", EmailVerified: false,
		hash: "$2a$10$wOWJEcbu/mLiHM/wGOziZe33iIcgna8n2eqeu315x8/dFCCQmjxbG"}
)

// People returns every user the stack's Dex knows.
func People() []User {
	return []User{Alice, Bob, Carol, Dave, Erin}
}

// Client IDs registered at the stack's Dex.
const (
	// GatewayClientID is headgate's client, with the stack's GatewayClientSecret.
	GatewayClientID    = "headgate"
	dexClientHeadscale = "headscale"
)

// writeDexConfig writes Dex's configuration: in-memory storage, the password database with
// People and their groups, no approval screen, and clients for headgate (one redirect URI per
// reserved gateway port) and Headscale.
func (s *Stack) writeDexConfig(path string) error {
	type staticPassword struct {
		Email             string   `yaml:"email"`
		Hash              string   `yaml:"hash"`
		Username          string   `yaml:"username"`
		Name              string   `yaml:"name"`
		PreferredUsername string   `yaml:"preferredUsername"`
		EmailVerified     bool     `yaml:"emailVerified"`
		UserID            string   `yaml:"userID"`
		Groups            []string `yaml:"groups,omitempty"`
	}
	type staticClient struct {
		ID           string   `yaml:"id"`
		Secret       string   `yaml:"secret"`
		Name         string   `yaml:"name"`
		RedirectURIs []string `yaml:"redirectURIs"`
	}
	var passwords []staticPassword
	for _, u := range People() {
		passwords = append(passwords, staticPassword{Email: u.Email, Hash: u.hash, Username: u.Username,
			Name: u.Name, PreferredUsername: u.Username, EmailVerified: u.EmailVerified, UserID: u.UserID, Groups: u.Groups})
	}
	var gatewayRedirects []string
	for _, port := range s.gatewayPorts {
		gatewayRedirects = append(gatewayRedirects, "http://"+HostPort(port)+"/oauth2/callback")
	}
	cfg := map[string]any{
		"issuer":  s.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": HostPort(s.dexPort)},
		"logger":  map[string]any{"level": "info", "format": "text"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"responseTypes":      []string{"code"},
		},
		"enablePasswordDB": true,
		"staticPasswords":  passwords,
		"staticClients": []staticClient{
			{ID: GatewayClientID, Secret: s.GatewayClientSecret, Name: "headgate", RedirectURIs: gatewayRedirects},
			{ID: dexClientHeadscale, Secret: s.headscaleClientSecret, Name: "Headscale",
				RedirectURIs: []string{s.HeadscaleURL + "/oidc/callback"}},
		},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode dex config: %w", err)
	}
	return os.WriteFile(path, data, 0o600)
}

// startDex writes Dex's configuration and starts it, waiting for its discovery document.
func (s *Stack) startDex(ctx context.Context) error {
	cfgPath := filepath.Join(s.Dir, "dex.yaml")
	if err := s.writeDexConfig(cfgPath); err != nil {
		return err
	}
	return s.runDex(ctx, cfgPath)
}

// DexClient is an OAuth2 client of the stack's Dex, such as another authenticating proxy run
// beside headgate for comparison.
type DexClient struct {
	ID     string
	Secret string
	// RedirectURIs are the only callback URLs Dex accepts for the client.
	RedirectURIs []string
}

// AddDexClient registers c at the stack's Dex. Dex reads its clients from its configuration
// only, so AddDexClient rewrites the configuration and restarts Dex. Dex keeps everything in
// memory: its signing keys are new afterwards and earlier sign-ins at Dex are forgotten, so
// call it before anyone signs in.
func (s *Stack) AddDexClient(ctx context.Context, c DexClient) error {
	cfgPath := filepath.Join(s.Dir, "dex.yaml")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("add dex client %s: %w", c.ID, err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("add dex client %s: decode dex config: %w", c.ID, err)
	}
	clients, _ := cfg["staticClients"].([]any)
	cfg["staticClients"] = append(clients, map[string]any{
		"id": c.ID, "secret": c.Secret, "name": c.ID, "redirectURIs": c.RedirectURIs,
	})
	if data, err = yaml.Marshal(cfg); err != nil {
		return fmt.Errorf("add dex client %s: encode dex config: %w", c.ID, err)
	}
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return fmt.Errorf("add dex client %s: %w", c.ID, err)
	}
	s.dex.stop()
	if err := s.runDex(ctx, cfgPath); err != nil {
		return fmt.Errorf("add dex client %s: %w", c.ID, err)
	}
	return nil
}

// runDex starts Dex with the configuration at cfgPath and waits for its discovery document.
func (s *Stack) runDex(ctx context.Context, cfgPath string) error {
	p, err := startProcess("dex", s.Dir, filepath.Join(s.Dir, "dex.log"), s.bin.dex, "serve", cfgPath)
	if err != nil {
		return err
	}
	s.dex = p
	if err := p.waitHTTP(ctx, s.Issuer+"/.well-known/openid-configuration", 30*time.Second); err != nil {
		return fmt.Errorf("start dex: %w", err)
	}
	return nil
}

// BrowserLogin signs in the way a browser does at any client of the stack's Dex, headgate or
// not: it navigates to startURL (such as another proxy's sign-in URL), follows the redirects
// to Dex's password form, submits email and password, and follows the redirects back. It
// returns the page the flow ends on; jar keeps the client's cookies.
func BrowserLogin(ctx context.Context, jar http.CookieJar, startURL, email, password string) (*Page, error) {
	page, err := BrowserLoginUntil(ctx, jar, startURL, email, password, "")
	if err != nil {
		return nil, fmt.Errorf("sign in %s: %w", email, err)
	}
	return page, nil
}
