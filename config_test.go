package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env returns a lookup function over a fixed environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

var demoEnv = map[string]string{
	"OIDC_CLIENT_SECRET":      "client-secret",
	"HEADSCALE_API_KEY":       "hskey-api-example",
	"HEADGATE_SESSION_SECRET": strings.Repeat("s", 40),
	"HEADGATE_REDIS_URL":      "",
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := loadConfig("gateway.yaml", env(demoEnv))
	if err != nil {
		t.Fatalf("gateway.yaml: %v", err)
	}
	if got, want := cfg.Gateway.PublicURL, "http://127.0.0.1:4180"; got != want {
		t.Errorf("public_url: got %q, want %q", got, want)
	}
	if got, want := cfg.Gateway.OIDC.ClientSecret, "client-secret"; got != want {
		t.Errorf("oidc.client_secret: got %q, want %q", got, want)
	}
	if got, want := cfg.Link.TTL, time.Hour; got != want {
		t.Errorf("link.ttl: got %v, want %v", got, want)
	}
	if got, want := len(cfg.Session.Secret), 1; got != want {
		t.Errorf("session.secret: got %d secrets, want %d", got, want)
	}
	if cfg.Redis.URL != "" {
		t.Errorf("redis.url: got %q, want empty", cfg.Redis.URL)
	}
	if got, want := cfg.Gateway.Headplane.Path, "/admin"; got != want {
		t.Errorf("headplane.path: got %q, want %q", got, want)
	}
}

func TestConfigHeadplane(t *testing.T) {
	base, err := os.ReadFile("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shipped, _, _ := strings.Cut(string(base), "headplane:\n")
	tests := []struct {
		section, want string // want "" for a valid section
	}{
		{"headplane:\n  path: /admin/\n  link_at_sign_in: false\n", ""},
		{"headplane: {}\n", ""},
		{"headplane:\n  path: admin\n", "headplane.path: must be a plain path starting with /"},
		{"headplane:\n  path: /\n", "headplane.path: \"/\" would cover headgate's own or every path"},
		{"headplane:\n  path: /oauth2/admin\n", "headplane.path: \"/oauth2/admin\" would cover headgate's own"},
		{"headplane:\n  path: //admin\n", "headplane.path: must be a plain path"},
		{"headplane:\n  path: /ad%6din\n", "headplane.path: must be a plain path"},
		{"headplane:\n  link_at_sign_in: true\n", "headplane.link_at_sign_in: needs headplane.path"},
		{"headplane:\n  base: /admin\n", "headplane.base: unknown key"},
	}
	for _, tt := range tests {
		_, err := loadConfig(writeConfig(t, shipped+tt.section), env(demoEnv))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: got %v, want no error", tt.section, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: got %v, want an error containing %q", tt.section, err, tt.want)
		}
	}
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:4180
public_url: ftp://gate
upstream: "::not a url"
colour: blue
trusted_proxies: [10.0.0.0/8, 10.0.0/8]
oidc:
  issuer: http://idp.example.com
  client_id: ""
  client_secret: ${MISSING_SECRET}
  scopes: [email]
headscale:
  url: http://127.0.0.1:8080
  api_key: key
  timeout: fast
link:
  match: [provider_id, nickname]
  unlinked: maybe
  ttl: 1x
session:
  secret: short
  lifetime: 12h
  extra: 1
redis:
  url: mysql://nope
`)
	_, err := loadConfig(path, env(nil))
	if err == nil {
		t.Fatal("got no error, want one per problem")
	}
	msg := err.Error()
	for _, want := range []string{
		"colour: unknown key",
		"session.extra: unknown key",
		"headscale.timeout: invalid duration \"fast\"",
		"link.ttl: invalid duration \"1x\"",
		"oidc.client_secret: environment variable MISSING_SECRET is not set",
		"public_url: must be an http or https URL",
		"upstream: ",
		"oidc.client_id: required",
		"oidc.scopes: must contain openid",
		"link.match[1]",
		"link.unlinked",
		"session.secret",
		"redis.url",
		"trusted_proxies[1]: must be an IP address or CIDR prefix",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q; got:\n%s", want, msg)
		}
	}
}

func TestConfigFlowStyleErrorsNamePaths(t *testing.T) {
	path := writeConfig(t, `
public_url: http://127.0.0.1:4180
upstream: http://127.0.0.1:3000
oidc: {issuer: http://127.0.0.1:5556/dex, client_id: headgate, client_secret: x, scope: [openid]}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: `+strings.Repeat("k", 32)+`, lifetime: forever}
`)
	_, err := loadConfig(path, env(nil))
	if err == nil {
		t.Fatal("got no error, want two")
	}
	for _, want := range []string{"oidc.scope: unknown key", "session.lifetime: invalid duration \"forever\""} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q; got:\n%s", want, err)
		}
	}
}

func TestConfigSecretFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"client":  "from-file\n",
		"apikey":  "hskey-api-file\n",
		"secrets": strings.Repeat("n", 32) + "\n\n" + strings.Repeat("o", 32) + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(path, []byte(`
public_url: https://gate.example.com
upstream: http://127.0.0.1:3000
oidc: {issuer: https://idp.example.com, client_id: headgate, client_secret_file: client}
headscale: {url: http://127.0.0.1:8080, api_key_file: apikey}
session: {secret_file: secrets}
`), 0o600)
	cfg, err := loadConfig(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Gateway.OIDC.ClientSecret, "from-file"; got != want {
		t.Errorf("client secret: got %q, want %q", got, want)
	}
	if got, want := cfg.Headscale.APIKey, "hskey-api-file"; got != want {
		t.Errorf("api key: got %q, want %q", got, want)
	}
	if got, want := len(cfg.Session.Secret), 2; got != want {
		t.Errorf("secrets: got %d, want %d (rotation list, one per line)", got, want)
	}
}

func TestConfigMissingSecretFileNamed(t *testing.T) {
	path := writeConfig(t, `
public_url: https://gate.example.com
upstream: http://127.0.0.1:3000
oidc: {issuer: https://idp.example.com, client_id: headgate, client_secret_file: /nonexistent/secret}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: `+strings.Repeat("k", 32)+`}
`)
	_, err := loadConfig(path, env(nil))
	if err == nil || !strings.Contains(err.Error(), "oidc.client_secret_file: open /nonexistent/secret") {
		t.Fatalf("got %v, want the missing file named under oidc.client_secret_file", err)
	}
}

func TestConfigEnvValueCannotInjectYAML(t *testing.T) {
	path := writeConfig(t, `
public_url: https://gate.example.com
upstream: http://127.0.0.1:3000
oidc: {issuer: https://idp.example.com, client_id: headgate, client_secret: "${SECRET}"}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: `+strings.Repeat("k", 32)+`}
`)
	secret := "x\nupstream: http://evil.example.com\n# "
	cfg, err := loadConfig(path, env(map[string]string{"SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Gateway.Upstream, "http://127.0.0.1:3000"; got != want {
		t.Errorf("upstream: got %q, want %q", got, want)
	}
	if got := cfg.Gateway.OIDC.ClientSecret; got != secret {
		t.Errorf("client secret: got %q, want %q", got, secret)
	}
}

func TestConfigErrorsNeverEchoSecrets(t *testing.T) {
	path := writeConfig(t, `
public_url: https://gate.example.com
upstream: http://127.0.0.1:3000
oidc: {issuer: https://idp.example.com, client_id: headgate, client_secret: x}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: tooshort-but-secret}
redis: {url: "redis://user:hunter2-password@[::1:6379/0"}
`)
	_, err := loadConfig(path, env(nil))
	if err == nil {
		t.Fatal("got no error, want errors for session.secret and redis.url")
	}
	for _, secret := range []string{"tooshort-but-secret", "hunter2-password"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes a secret %q:\n%s", secret, err)
		}
	}
}

// FuzzLoadConfig feeds arbitrary documents to the loader: it must never panic, and whatever it
// accepts must pass Validate.
func FuzzLoadConfig(f *testing.F) {
	shipped, err := os.ReadFile("gateway.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(shipped))
	f.Add("public_url: http://x\nupstream: http://y\n")
	f.Add("oidc: {issuer: http://i, client_id: c, client_secret: ${S}}\n")
	f.Add("session:\n  secret: [a, b]\n")
	f.Add("link: {match: [email, email], ttl: -1h}\n")
	f.Add("- a\n- b\n")
	f.Add("&a [*a]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path, env(demoEnv))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loadConfig accepted a config that fails Validate: %v", err)
		}
	})
}

// TestConfigAuthorization: routes, access rules, headers, assertions and the groups keys load
// with their defaults, key files are read, and every problem in them is named by its path.
func TestConfigAuthorization(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "assertion.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(base) + `
access: {headscale_groups: [admins]}
headers: {X-WEBAUTH-USER: headscale_user}
routes:
  - host: grafana.example.com
    upstream: http://127.0.0.1:3001
    preserve_host: false
    access: {groups: [grafana], email_domains: [example.com]}
  - path: /wiki
    upstream: http://127.0.0.1:3002
    unlinked: allow
assertion:
  header: X-Headgate-Assertion
  key_files: [assertion.pem]
`
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(good, "oidc:\n", "oidc:\n  groups_claim: realm_access.roles\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, env(demoEnv))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if len(g.Routes) != 2 || g.Routes[0].Name != "grafana.example.com/" || g.Routes[1].Name != "/wiki" || *g.Routes[0].PreserveHost || !*g.Routes[1].PreserveHost {
		t.Errorf("routes: got %+v", g.Routes)
	}
	if g.Assertion.Lifetime != 5*time.Minute || g.Assertion.KeyRotation != 7*24*time.Hour || len(g.Assertion.Keys) != 1 || len(g.Assertion.KeyFiles) != 0 {
		t.Errorf("assertion: got lifetime %v, rotation %v, %d keys, %d files", g.Assertion.Lifetime, g.Assertion.KeyRotation, len(g.Assertion.Keys), len(g.Assertion.KeyFiles))
	}
	if g.OIDC.GroupsClaim != "realm_access.roles" || cfg.Headscale.PolicyRefresh != time.Minute {
		t.Errorf("groups: got claim %q, policy refresh %v", g.OIDC.GroupsClaim, cfg.Headscale.PolicyRefresh)
	}

	bad := string(base) + `
access: {emails: [nobody], colour: red}
headers: {"Bad Name": email, X-Role: password}
routes:
  - host: "grafana.example.com:443"
    path: /a/../b
    upstream: ftp://x
    unlinked: maybe
  - path: /b
    upstream: http://127.0.0.1:3002
  - path: /b
    upstream: http://127.0.0.1:3003
assertion:
  header: Cookie
  lifetime: 10m
  key_rotation: 15m
  keys: ["not a key"]
  key_files: [missing.pem]
`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadConfig(path, env(demoEnv))
	if err == nil {
		t.Fatal("got no error")
	}
	for _, want := range []string{
		"access.colour: unknown key",
		`access.emails[0]: "nobody" is not an email address`,
		`headers: "Bad Name" cannot carry an identity`,
		"headers.X-Role: must be one of",
		`routes[0].host: "grafana.example.com:443" is not a host name`,
		"routes[0].path: must be a plain path",
		"routes[0].upstream: ",
		`routes[0].unlinked: must be deny or allow`,
		"routes[2]: serves the same host and path as routes[1]",
		`assertion.header: "Cookie" cannot carry an assertion`,
		"assertion.key_rotation: must be at least twice assertion.lifetime",
		"assertion.keys[0]: no PEM block",
		"assertion.key_files[0]: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q; got:\n%s", want, err)
		}
	}
}
