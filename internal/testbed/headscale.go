package testbed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http/cookiejar"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"headgate/linker"

	"go.yaml.in/yaml/v3"
)

// HeadscaleUser is a user as Headscale's API lists it: the type headgate's linker decodes.
type HeadscaleUser = linker.User

// writeHeadscaleConfig writes an offline Headscale configuration: every listener on 127.0.0.1,
// SQLite in the stack's directory, one DERP region from a local file (a dummy one, or the
// stack's loopback relay with Options.DERP), and OIDC against the stack's Dex.
func (s *Stack) writeHeadscaleConfig(path string) error {
	derpPath := filepath.Join(s.Dir, "derp.yaml")
	derp := map[string]any{"regions": map[int]any{
		900: map[string]any{
			"regionid": 900, "regioncode": "test", "regionname": "Test",
			"nodes": []map[string]any{{
				"name": "900a", "regionid": 900, "hostname": "derp.invalid",
				"ipv4": "127.0.0.1", "stunport": -1, "derpport": 0,
			}},
		},
	}}
	if s.DERP != nil {
		derp = s.DERP.headscaleMap()
	}
	data, err := yaml.Marshal(derp)
	if err != nil {
		return fmt.Errorf("encode derp map: %w", err)
	}
	if err := os.WriteFile(derpPath, data, 0o600); err != nil {
		return err
	}
	cfg := map[string]any{
		"server_url":          s.HeadscaleURL,
		"listen_addr":         HostPort(s.headscalePort),
		"metrics_listen_addr": HostPort(s.headscaleMetricsPort),
		"grpc_listen_addr":    HostPort(s.headscaleGRPCPort),
		"grpc_allow_insecure": false,
		"noise":               map[string]any{"private_key_path": filepath.Join(s.Dir, "noise_private.key")},
		"prefixes":            map[string]any{"v4": tailnetV4.String(), "v6": tailnetV6.String(), "allocation": "sequential"},
		"derp": map[string]any{
			"server":              map[string]any{"enabled": false},
			"urls":                []string{},
			"paths":               []string{derpPath},
			"auto_update_enabled": false,
		},
		"disable_check_updates": true,
		"database": map[string]any{
			"type":   "sqlite",
			"sqlite": map[string]any{"path": s.HeadscaleDB(), "write_ahead_log": true},
		},
		"log":         map[string]any{"level": "info", "format": "text"},
		"policy":      map[string]any{"mode": "database"},
		"dns":         map[string]any{"magic_dns": false, "override_local_dns": false, "nameservers": map[string]any{"global": []string{}}},
		"unix_socket": s.headscaleSocket,
		"logtail":     map[string]any{"enabled": false},
		"oidc": map[string]any{
			"only_start_if_oidc_is_available": true,
			"issuer":                          s.Issuer,
			"client_id":                       dexClientHeadscale,
			"client_secret":                   s.headscaleClientSecret,
			"scope":                           []string{"openid", "profile", "email"},
			"pkce":                            map[string]any{"enabled": true, "method": "S256"},
			"extra_params":                    map[string]string{"connector_id": dexConnector},
		},
	}
	data, err = yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode headscale config: %w", err)
	}
	return os.WriteFile(path, data, 0o600)
}

// The prefixes Headscale hands the tailnet's addresses out of.
var (
	tailnetV4 = netip.MustParsePrefix("100.64.0.0/10")
	tailnetV6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// HeadscaleDB is the path of Headscale's SQLite database, for tests that change it behind
// Headscale's back.
func (s *Stack) HeadscaleDB() string { return filepath.Join(s.Dir, "headscale.sqlite") }

// startHeadscale writes the configuration, starts Headscale, waits for /health and creates the
// API key headgate uses.
func (s *Stack) startHeadscale(ctx context.Context) error {
	s.headscaleConfig = filepath.Join(s.Dir, "headscale.yaml")
	if err := s.writeHeadscaleConfig(s.headscaleConfig); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.runHeadscale(ctx)
	p := s.headscale
	s.mu.Unlock()
	if err != nil {
		return err
	}
	key, err := s.CreateAPIKey(ctx)
	if err != nil {
		return p.failure(err)
	}
	s.APIKey = key
	return nil
}

// runHeadscale starts Headscale with the configuration already written and waits for /health.
// The caller holds s.mu.
func (s *Stack) runHeadscale(ctx context.Context) error {
	p, err := startProcess("headscale", s.Dir, filepath.Join(s.Dir, "headscale.log"),
		s.bin.headscale, "serve", "-c", s.headscaleConfig)
	if err != nil {
		return err
	}
	s.headscale = p
	if err := p.waitHTTP(ctx, s.HeadscaleURL+"/health", 60*time.Second); err != nil {
		return fmt.Errorf("start headscale: %w", err)
	}
	return nil
}

// headscaleCLI runs the headscale command against the stack's server (through its unix socket).
func (s *Stack) headscaleCLI(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args = append([]string{"-c", s.headscaleConfig}, args...)
	out, err := runCommand(ctx, s.Dir, s.bin.headscale, args...)
	if err != nil {
		return out, fmt.Errorf("headscale %s: %w", args[2], err)
	}
	return out, nil
}

// CreateAPIKey creates a Headscale API key valid for 90 days.
func (s *Stack) CreateAPIKey(ctx context.Context) (string, error) {
	out, err := s.headscaleCLI(ctx, "apikeys", "create", "--expiration", "90d")
	if err != nil {
		return "", fmt.Errorf("create headscale api key: %w", err)
	}
	key := strings.TrimSpace(string(out))
	if !s.headscaleRel.isAPIKey(key) {
		return "", errors.New("create headscale api key: the command printed no key")
	}
	return key, nil
}

// CreateCLIUser creates a Headscale user the way an administrator does on the command line:
// a name and an email, no provider.
func (s *Stack) CreateCLIUser(ctx context.Context, name, email string) (HeadscaleUser, error) {
	args := []string{"users", "create", name}
	if email != "" {
		args = append(args, "--email", email)
	}
	if _, err := s.headscaleCLI(ctx, args...); err != nil {
		return HeadscaleUser{}, fmt.Errorf("create headscale user %s: %w", name, err)
	}
	return s.FindUser(ctx, func(u HeadscaleUser) bool { return u.Name == name && u.Provider == "" })
}

// CreateOIDCUser makes Headscale create an OIDC user for u the way it does in production: u
// signs in at Dex through Headscale's own registration login. No node is waiting for that
// registration, so Headscale answers 410 (500 before 0.27) after it has created the user. Should that flow stop
// creating users in a later Headscale, the user is inserted into Headscale's database with
// the provider ID Headscale would have stored.
func (s *Stack) CreateOIDCUser(ctx context.Context, u User) (HeadscaleUser, error) {
	providerID := s.Issuer + "/" + u.Subject()
	byProvider := func(hu HeadscaleUser) bool { return hu.ProviderID == providerID }
	loginErr := s.headscaleOIDCLogin(ctx, u)
	if loginErr == nil {
		hu, err := s.FindUser(ctx, byProvider)
		if err == nil {
			return hu, nil
		}
		loginErr = err
	}
	s.logf("headscale's oidc login did not create %s (%v); inserting the user into its database", u.Email, loginErr)
	s.mu.Lock()
	s.inserted = append(s.inserted, u.Email)
	s.mu.Unlock()
	if err := s.insertOIDCUser(ctx, u, providerID); err != nil {
		return HeadscaleUser{}, fmt.Errorf("create headscale oidc user %s: login: %v; database insert: %w", u.Email, loginErr, err)
	}
	return s.FindUser(ctx, byProvider)
}

// headscaleOIDCLogin drives Headscale's registration login for u with a fresh, unused auth ID.
func (s *Stack) headscaleOIDCLogin(ctx context.Context, u User) error {
	jar, _ := cookiejar.New(nil)
	authID := s.headscaleRel.authIDPrefix + rand.Text()[:24]
	page, err := BrowserLoginUntil(ctx, jar, s.HeadscaleURL+"/register/"+authID, u.Email, u.Password, "")
	if err != nil {
		return err
	}
	if want := s.headscaleRel.loginStatus; page.Status != want {
		return fmt.Errorf("headscale answered the oidc callback with %d, want %d (%s)", page.Status, want, page.URL.Path)
	}
	return nil
}

// insertOIDCUser writes an OIDC user row straight into Headscale's SQLite database.
func (s *Stack) insertOIDCUser(ctx context.Context, u User, providerID string) error {
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		return errors.New("the sqlite3 command is not installed")
	}
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	stmt := fmt.Sprintf("INSERT INTO users (created_at, updated_at, name, display_name, email, provider_identifier, provider) "+
		"VALUES (datetime('now'), datetime('now'), %s, %s, %s, %s, 'oidc');",
		q(u.Username), q(u.Name), q(u.Email), q(providerID))
	if _, err := runCommand(ctx, s.Dir, sqlite, s.HeadscaleDB(), stmt); err != nil {
		return fmt.Errorf("sqlite3: %w", err)
	}
	return nil
}

// ListUsers lists every Headscale user through the API, as headgate sees them: with headgate's
// own Headscale client.
func (s *Stack) ListUsers(ctx context.Context) ([]HeadscaleUser, error) {
	cfg := linker.HeadscaleConfig{URL: s.HeadscaleURL, APIKey: s.APIKey}
	cfg.SetDefaults()
	return linker.NewHeadscale(cfg, nil).ListUsers(ctx)
}

// FindUsers looks up the Headscale users whose field ("name" or "email") is value, with
// headgate's own Headscale client, the way headgate does past the listing limit.
func (s *Stack) FindUsers(ctx context.Context, field, value string) ([]HeadscaleUser, error) {
	cfg := linker.HeadscaleConfig{URL: s.HeadscaleURL, APIKey: s.APIKey}
	cfg.SetDefaults()
	return linker.NewHeadscale(cfg, nil).FindUsers(ctx, field, value)
}

// FindUser returns the one Headscale user that match accepts.
func (s *Stack) FindUser(ctx context.Context, match func(HeadscaleUser) bool) (HeadscaleUser, error) {
	users, err := s.ListUsers(ctx)
	if err != nil {
		return HeadscaleUser{}, err
	}
	var found []HeadscaleUser
	for _, u := range users {
		if match(u) {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		return HeadscaleUser{}, fmt.Errorf("find headscale user: %d users match, want 1 (all: %+v)", len(found), users)
	}
	return found[0], nil
}

// Accounts are the Headscale users CreateAccounts made for People. Carol has none.
type Accounts struct {
	// Alice is an OIDC user that Headscale created from her sign-in at Dex.
	Alice HeadscaleUser
	// Bob, Dave and Erin are CLI users named after their Dex usernames, with their emails.
	Bob, Dave, Erin HeadscaleUser
}

// CreateAccounts gives People their Headscale users: Alice through Headscale's own OIDC
// login, Bob, Dave and Erin as CLI users with their emails, and Carol none.
func (s *Stack) CreateAccounts(ctx context.Context) (Accounts, error) {
	var a Accounts
	var err error
	if a.Alice, err = s.CreateOIDCUser(ctx, Alice); err != nil {
		return a, err
	}
	for _, c := range []struct {
		dst *HeadscaleUser
		u   User
	}{{&a.Bob, Bob}, {&a.Dave, Dave}, {&a.Erin, Erin}} {
		if *c.dst, err = s.CreateCLIUser(ctx, c.u.Username, c.u.Email); err != nil {
			return a, err
		}
	}
	return a, nil
}

// RenameUser renames the Headscale user with id, as an administrator does on the command line.
func (s *Stack) RenameUser(ctx context.Context, id, newName string) error {
	if _, err := s.headscaleCLI(ctx, "users", "rename", "--identifier", id, "--new-name", newName); err != nil {
		return fmt.Errorf("rename headscale user %s: %w", id, err)
	}
	return nil
}

// DeleteUser deletes the Headscale user with id, as an administrator does on the command line.
func (s *Stack) DeleteUser(ctx context.Context, id string) error {
	if _, err := s.headscaleCLI(ctx, "users", "destroy", "--identifier", id, "--force"); err != nil {
		return fmt.Errorf("delete headscale user %s: %w", id, err)
	}
	return nil
}

// SetPolicy makes policy (HuJSON) Headscale's ACL policy the way an administrator does: it
// writes the policy to a file in Dir and runs `headscale policy set -f FILE` against the stack's
// server, which keeps it in its database. Headscale refuses a policy it cannot apply, such as
// one whose groups name members without "@"; the error carries its message.
func (s *Stack) SetPolicy(ctx context.Context, policy string) error {
	path := filepath.Join(s.Dir, fmt.Sprintf("policy%d.hujson", s.policies.Add(1)))
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		return fmt.Errorf("set headscale policy: %w", err)
	}
	if _, err := s.headscaleCLI(ctx, "policy", "set", "-f", path); err != nil {
		return fmt.Errorf("set headscale policy: %w", err)
	}
	return nil
}
