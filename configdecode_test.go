package main

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// validDoc is a complete configuration, one key per line, to which the tests below add or
// replace lines.
var validDoc = []string{
	"public_url: http://127.0.0.1:4180",
	"upstream: http://127.0.0.1:3000",
	"oidc:",
	"  issuer: http://127.0.0.1:5556/dex",
	"  client_id: headgate",
	"  client_secret: x",
	"headscale:",
	"  url: http://127.0.0.1:8080",
	"  api_key: k",
	"session:",
	"  secret: " + strings.Repeat("k", 32),
}

// loadErrors loads doc and returns the lines of its error after the file name's; none when
// doc is valid.
func loadErrors(t *testing.T, doc string, vars map[string]string) []string {
	t.Helper()
	_, err := loadConfig(writeConfig(t, doc), env(vars))
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return lines // not a list of problems: the document did not parse
	}
	return lines[1:]
}

func TestConfigErrorLines(t *testing.T) {
	doc := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" }
	tests := []struct {
		name string
		doc  string
		vars map[string]string
		want []string
	}{{
		// The line of the value itself, and no "upstream: required" after it.
		name: "mapping where a string is expected",
		doc: doc("listen: 127.0.0.1:4180", "public_url: http://127.0.0.1:4180", "oidc:",
			"  issuer: http://127.0.0.1:5556/dex", "  client_id: headgate", "  client_secret: x",
			"upstream: {a: b}", "headscale: {url: http://127.0.0.1:8080, api_key: k}",
			"session: {secret: "+strings.Repeat("k", 32)+"}"),
		want: []string{"line 7: upstream: expected a string, got a mapping"},
	}, {
		name: "duplicate key",
		doc:  doc(append(slices.Clone(validDoc), "upstream: http://127.0.0.1:3001")...),
		want: []string{"line 12: upstream: duplicate key (first at line 2)"},
	}, {
		name: "duplicate key in a section",
		doc:  doc(append(slices.Clone(validDoc), "  secret: "+strings.Repeat("j", 32))...),
		want: []string{"line 12: session.secret: duplicate key (first at line 11)"},
	}, {
		name: "key with a space",
		doc:  doc(append(slices.Clone(validDoc), "skip auth: [/healthz]")...),
		want: []string{`line 12: "skip auth": unknown key`},
	}, {
		name: "unset secrets",
		doc: doc("public_url: http://127.0.0.1:4180", "upstream: http://127.0.0.1:3000", "oidc:",
			"  issuer: http://127.0.0.1:5556/dex", "  client_id: headgate", "  client_secret: ${A}",
			"headscale:", "  url: http://127.0.0.1:8080", "  api_key: ${B}", "session:", "  secret: ${C}"),
		want: []string{
			"line 6: oidc.client_secret: environment variable A is not set",
			"line 9: headscale.api_key: environment variable B is not set",
			"line 11: session.secret: environment variable C is not set",
		},
	}, {
		name: "unset secret in a rotation list",
		doc:  doc(append(validDoc[:10:10], "  secret: [\"${C}\", "+strings.Repeat("k", 32)+"]")...),
		want: []string{"line 11: session.secret[0]: environment variable C is not set"},
	}, {
		name: "set but empty variable",
		doc:  doc(append(validDoc[:5:5], "  client_secret: ${A}")...),
		vars: map[string]string{"A": ""},
		want: []string{
			"oidc.client_secret: required (or client_secret_file)",
			"headscale.url: required",
			"headscale.api_key: required (or api_key_file)",
			"session.secret: required (or secret_file)",
		},
	}, {
		name: "section of the wrong kind",
		doc:  doc("oidc: 5", "public_url: http://127.0.0.1:4180", "upstream: http://127.0.0.1:3000", "headscale: {url: http://h, api_key: k}", "session: {secret: "+strings.Repeat("k", 32)+"}"),
		want: []string{"line 1: oidc: expected a mapping, got a number"},
	}, {
		name: "list element of the wrong kind",
		doc:  doc(append(slices.Clone(validDoc), "link:", "  match: [email, [provider_id]]", "  ttl: 5")...),
		want: []string{
			"line 13: link.match[1]: expected a string, got a list",
			`line 14: link.ttl: invalid duration "5" (use a number and a unit, such as 90s, 15m or 12h)`,
		},
	}, {
		name: "secret of the wrong kind",
		doc:  doc(append(validDoc[:10:10], "  secret: {a: b}")...),
		want: []string{"line 11: session.secret: expected a string or a list of strings"},
	}, {
		name: "not a mapping",
		doc:  "- a\n- b\n",
		want: []string{"line 1: expected a mapping, got a list"},
	}, {
		name: "key that is not a name",
		doc:  doc(append(slices.Clone(validDoc), "? [a]", ": b")...),
		want: []string{"line 12: a key must be a name, not a list"},
	}, {
		name: "merge of itself",
		doc:  doc(append(slices.Clone(validDoc), "link: &l {<<: *l}")...),
		want: []string{"line 12: link.<<: a mapping cannot merge itself"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadErrors(t, tt.doc, tt.vars); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigErrorsNameNoGoType(t *testing.T) {
	for _, doc := range []string{
		"skip auth: x\n",
		"- a\n",
		"oidc: [a]\n",
		"session: {secret: [[a]]}\n",
		"headplane: {link_at_sign_in: maybe}\n",
		"oidc: {auth_params: {a: [b]}}\n",
	} {
		msg := strings.Join(loadErrors(t, doc, nil), "\n")
		if msg == "" {
			t.Errorf("%q: got no error", doc)
			continue
		}
		for _, goName := range []string{"main.", "gateway.", "Config", "Secrets", "[]string", "map[", "!!"} {
			if strings.Contains(msg, goName) {
				t.Errorf("%q: error names a Go type or YAML tag (%q):\n%s", doc, goName, msg)
			}
		}
	}
}

func TestConfigAnchorsAndMerges(t *testing.T) {
	doc := strings.Join(validDoc[:6], "\n") + `
headscale: &hs
  url: http://127.0.0.1:8080
  api_key: k
session: {secret: &s ` + strings.Repeat("k", 32) + `}
link:
  <<: [{ttl: 2h, unlinked: allow}, {ttl: 3h}]
  ttl: 4h
  negative_ttl: 1m
skip_auth: [&p /healthz, *p]
`
	cfg, err := loadConfig(writeConfig(t, doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Link.TTL, 4*time.Hour; got != want {
		t.Errorf("link.ttl: got %v, want %v (the mapping's own key wins over merged ones)", got, want)
	}
	if got, want := cfg.Link.Unlinked, "allow"; got != want {
		t.Errorf("link.unlinked: got %q, want %q (merged)", got, want)
	}
	if got, want := cfg.Gateway.SkipAuth, []string{"/healthz", "/healthz"}; !slices.Equal(got, want) {
		t.Errorf("skip_auth: got %q, want %q", got, want)
	}
}

func TestConfigDefaultsApplied(t *testing.T) {
	doc := strings.Join(append(slices.Clone(validDoc), "redis: {url: 'redis://h:26379/0?master_name=m'}", "headplane: {path: /admin}"), "\n")
	cfg, err := loadConfig(writeConfig(t, doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"listen", cfg.Listen, "127.0.0.1:4180"},
		{"shutdown_timeout", cfg.ShutdownTimeout, 10 * time.Second},
		{"upstream_timeout", cfg.Gateway.UpstreamTimeout, 30 * time.Second},
		{"body_timeout", cfg.Gateway.BodyTimeout, 30 * time.Second},
		{"preserve_host", *cfg.Gateway.PreserveHost, true},
		{"oidc.timeout", cfg.Gateway.OIDC.Timeout, 10 * time.Second},
		{"oidc.scopes", strings.Join(cfg.Gateway.OIDC.Scopes, " "), "openid email profile"},
		{"headplane.link_at_sign_in", *cfg.Gateway.Headplane.LinkAtSignIn, true},
		{"headscale.timeout", cfg.Headscale.Timeout, 5 * time.Second},
		{"headscale.list_max_age", cfg.Headscale.ListMaxAge, 5 * time.Second},
		{"link.match", strings.Join(cfg.Link.Match, " "), "provider_id"},
		{"link.unlinked", cfg.Link.Unlinked, "deny"},
		{"link.ttl", cfg.Link.TTL, time.Hour},
		{"link.negative_ttl", cfg.Link.NegativeTTL, time.Minute},
		{"session.lifetime", cfg.Session.Lifetime, 12 * time.Hour},
		{"session.cookie_name", cfg.Session.CookieName, "_headgate"},
		{"session.login_timeout", cfg.Session.LoginTimeout, 10 * time.Minute},
		{"redis.mode", cfg.Redis.Mode, "sentinel"},
		{"redis.key_prefix", cfg.Redis.KeyPrefix, "headgate:"},
		{"redis.timeout", cfg.Redis.Timeout, time.Second},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.key, c.got, c.want)
		}
	}
}

func TestConfigEnvDefaults(t *testing.T) {
	tests := []struct {
		value string
		vars  map[string]string
		want  string // the value of listen
		// wantErr is the problem reported instead, "" for none.
		wantErr string
	}{
		{value: "${L:-127.0.0.1:4180}", want: "127.0.0.1:4180"},
		{value: "${L:-127.0.0.1:4180}", vars: map[string]string{"L": ""}, want: "127.0.0.1:4180"},
		{value: "${L:-127.0.0.1:4180}", vars: map[string]string{"L": "0.0.0.0:4180"}, want: "0.0.0.0:4180"},
		{value: "a${L:-}b", want: "ab"},
		// Set but empty, without a default: empty, so the key's own default applies.
		{value: "${L}", vars: map[string]string{"L": ""}, want: "127.0.0.1:4180"},
		{value: "${H:-localhost}:${P:-4180}", vars: map[string]string{"P": "80"}, want: "localhost:80"},
		// A default is text, taken as written: never YAML, never a further reference.
		{value: "'${L:-[a, b]}'", want: "[a, b]"},
		{value: "'${L:-$HOME}'", want: "$HOME"},
		{value: "${L}", wantErr: "line 12: listen: environment variable L is not set"},
		{value: "${L:-x}${M}", wantErr: "line 12: listen: environment variable M is not set"},
	}
	for _, tt := range tests {
		doc := strings.Join(append(slices.Clone(validDoc), "listen: "+tt.value), "\n")
		cfg, err := loadConfig(writeConfig(t, doc), env(tt.vars))
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s with %v: got %v, want an error containing %q", tt.value, tt.vars, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s with %v: got %v, want no error", tt.value, tt.vars, err)
		case tt.wantErr == "" && cfg.Listen != tt.want:
			t.Errorf("%s with %v: got %q, want %q", tt.value, tt.vars, cfg.Listen, tt.want)
		}
	}
}

// TestShippedConfigNeedsOnlyItsSecrets: gateway.yaml loads with the three secrets it documents
// and nothing else set, the container's listen address overrides the default, and the README
// lists every variable the file reads.
func TestShippedConfigNeedsOnlyItsSecrets(t *testing.T) {
	secrets := map[string]string{
		"OIDC_CLIENT_SECRET":      "client-secret",
		"HEADSCALE_API_KEY":       "hskey-api-example",
		"HEADGATE_SESSION_SECRET": strings.Repeat("s", 40),
	}
	read := make(map[string]bool)
	cfg, err := loadConfig("gateway.yaml", func(name string) (string, bool) {
		read[name] = true
		v, ok := secrets[name]
		return v, ok
	})
	if err != nil {
		t.Fatalf("gateway.yaml with only its three secrets set: %v", err)
	}
	if got, want := cfg.Listen, "127.0.0.1:4180"; got != want {
		t.Errorf("listen: got %q, want %q", got, want)
	}
	if cfg.Redis.URL != "" {
		t.Errorf("redis.url: got %q, want empty (the in-process store)", cfg.Redis.URL)
	}

	container := map[string]string{"HEADGATE_LISTEN": "0.0.0.0:4180", "HEADGATE_REDIS_URL": "redis://redis:6379/0"}
	maps.Copy(container, secrets)
	cfg, err = loadConfig("gateway.yaml", env(container))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Listen, "0.0.0.0:4180"; got != want {
		t.Errorf("listen with HEADGATE_LISTEN: got %q, want %q", got, want)
	}
	if got, want := cfg.Redis.URL, "redis://redis:6379/0"; got != want {
		t.Errorf("redis.url with HEADGATE_REDIS_URL: got %q, want %q", got, want)
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range read {
		if !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("README.md has no row for %s, which gateway.yaml reads", name)
		}
	}
	if len(read) < 5 {
		t.Errorf("gateway.yaml read %d variables (%v), want at least the three secrets, HEADGATE_LISTEN and HEADGATE_REDIS_URL", len(read), read)
	}
}
