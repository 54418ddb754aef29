package session

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	secretA = strings.Repeat("a1b2c3d4", 4)
	secretB = strings.Repeat("e5f6a7b8", 4)
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // every line of the joined error, in order; none: valid
	}{
		{name: "one secret", cfg: Config{Secret: Secrets{secretA}}},
		{name: "rotation", cfg: Config{Secret: Secrets{secretA, secretB}}},
		{name: "secret file not read yet", cfg: Config{SecretFile: "secret.txt"}},
		{name: "every field", cfg: Config{Secret: Secrets{secretA}, Lifetime: time.Hour,
			CookieName: "__Host-gate", LoginTimeout: time.Minute}},
		{name: "domain", cfg: Config{Secret: Secrets{secretA}, CookieDomain: ".example.com"}},
		{name: "no secret", cfg: Config{},
			want: []string{"secret: required (or secret_file)"}},
		{name: "secret and file", cfg: Config{Secret: Secrets{secretA}, SecretFile: "s"},
			want: []string{"secret_file: must not be set together with secret"}},
		{name: "short secret", cfg: Config{Secret: Secrets{"twelve bytes"}},
			want: []string{"secret: must be at least 32 bytes (got 12)"}},
		{name: "short second secret", cfg: Config{Secret: Secrets{secretA, "short"}},
			want: []string{"secret[1]: must be at least 32 bytes (got 5)"}},
		{name: "empty secret in list", cfg: Config{Secret: Secrets{"", secretA}},
			want: []string{"secret[0]: must be at least 32 bytes (got 0)"}},
		{name: "negative lifetime", cfg: Config{Secret: Secrets{secretA}, Lifetime: -time.Second},
			want: []string{"lifetime: must not be negative"}},
		{name: "negative login timeout", cfg: Config{Secret: Secrets{secretA}, LoginTimeout: -1},
			want: []string{"login_timeout: must not be negative"}},
		{name: "cookie name with space", cfg: Config{Secret: Secrets{secretA}, CookieName: "head gate"},
			want: []string{`cookie_name: must be a valid cookie name (got "head gate")`}},
		{name: "cookie name with semicolon", cfg: Config{Secret: Secrets{secretA}, CookieName: "a;b"},
			want: []string{`cookie_name: must be a valid cookie name (got "a;b")`}},
		{name: "bad domain", cfg: Config{Secret: Secrets{secretA}, CookieDomain: "exa mple.com"},
			want: []string{`cookie_domain: must be a domain name (got "exa mple.com")`}},
		{name: "host prefix with domain", cfg: Config{Secret: Secrets{secretA}, CookieName: "__Host-gate", CookieDomain: "example.com"},
			want: []string{"cookie_domain: must be empty for a __Host- cookie_name"}},
		{name: "every problem at once",
			cfg: Config{Secret: Secrets{"x", "y"}, SecretFile: "f", Lifetime: -1, CookieName: "a b"},
			want: []string{
				"secret_file: must not be set together with secret",
				"secret[0]: must be at least 32 bytes (got 1)",
				"secret[1]: must be at least 32 bytes (got 1)",
				"lifetime: must not be negative",
				`cookie_name: must be a valid cookie name (got "a b")`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSecretsYAML(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    Secrets
		wantErr bool
	}{
		{name: "scalar", doc: "secret: " + secretA, want: Secrets{secretA}},
		{name: "quoted scalar", doc: `secret: "` + secretA + `"`, want: Secrets{secretA}},
		{name: "list", doc: "secret:\n  - " + secretA + "\n  - " + secretB, want: Secrets{secretA, secretB}},
		{name: "flow list", doc: "secret: [" + secretA + ", " + secretB + "]", want: Secrets{secretA, secretB}},
		{name: "empty scalar", doc: `secret: ""`, want: nil},
		{name: "null", doc: "secret:", want: nil},
		{name: "number", doc: "secret: 12345678901234567890123456789012345", want: Secrets{"12345678901234567890123456789012345"}},
		{name: "mapping", doc: "secret:\n  a: b", wantErr: true},
		{name: "list of mappings", doc: "secret:\n  - a: b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			err := yaml.Unmarshal([]byte(tt.doc), &cfg)
			if tt.wantErr {
				var te *yaml.TypeError
				if !errors.As(err, &te) {
					t.Fatalf("got error %v, want a *yaml.TypeError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Secret, tt.want) {
				t.Errorf("got %q, want %q", cfg.Secret, tt.want)
			}
		})
	}
}

func TestConfigYAMLStrict(t *testing.T) {
	doc := `
secret: ` + secretA + `
lifetime: 8h
cookie_name: _gate
cookie_domain: example.com
login_timeout: 5m
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := Config{Secret: Secrets{secretA}, Lifetime: 8 * time.Hour, CookieName: "_gate",
		CookieDomain: "example.com", LoginTimeout: 5 * time.Minute}
	if !slices.Equal(cfg.Secret, want.Secret) || cfg.Lifetime != want.Lifetime || cfg.CookieName != want.CookieName ||
		cfg.CookieDomain != want.CookieDomain || cfg.LoginTimeout != want.LoginTimeout {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}
