package linker

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // each a line of the error; none: valid
	}{
		{"zero", Config{}, nil},
		{"full", Config{Match: []string{"email", "provider_id"}, Unlinked: "allow", TTL: time.Hour, NegativeTTL: time.Minute}, nil},
		{"unknown strategy", Config{Match: []string{"provider_id", "foo"}},
			[]string{`match[1]: unknown strategy "foo" (want provider_id or email)`}},
		{"duplicate strategy", Config{Match: []string{"email", "email"}},
			[]string{`match[1]: duplicate strategy "email"`}},
		{"bad unlinked", Config{Unlinked: "maybe"}, []string{`unlinked: must be deny or allow (got "maybe")`}},
		{"negative durations", Config{TTL: -1, NegativeTTL: -1},
			[]string{"ttl: must not be negative", "negative_ttl: must not be negative"}},
		{"everything at once", Config{Match: []string{"Email"}, Unlinked: "no", TTL: -time.Second},
			[]string{`match[0]: unknown strategy "Email" (want provider_id or email)`,
				`unlinked: must be deny or allow (got "no")`, "ttl: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrorLines(t, tt.cfg.Validate(), tt.want)
		})
	}
}

func TestHeadscaleConfigValidate(t *testing.T) {
	const url = "https://headscale.example.com"
	tests := []struct {
		name string
		cfg  HeadscaleConfig
		want []string
	}{
		{"key", HeadscaleConfig{URL: url, APIKey: "hskey-api-x"}, nil},
		{"key file not yet read", HeadscaleConfig{URL: url, APIKeyFile: "/run/secrets/key"}, nil},
		{"http with path and durations", HeadscaleConfig{URL: "http://127.0.0.1:8080/hs/", APIKey: "k", Timeout: time.Second, ListMaxAge: time.Second}, nil},
		{"nothing", HeadscaleConfig{}, []string{"url: required", "api_key: required (or api_key_file)"}},
		{"both keys", HeadscaleConfig{URL: url, APIKey: "k", APIKeyFile: "f"},
			[]string{"api_key_file: must not be set together with api_key"}},
		{"key with newline", HeadscaleConfig{URL: url, APIKey: "hskey\n"},
			[]string{"api_key: must not contain spaces or control characters"}},
		{"relative URL", HeadscaleConfig{URL: "headscale:8080", APIKey: "k"},
			[]string{`url: must be an absolute http or https URL (got "headscale:8080")`}},
		{"no host", HeadscaleConfig{URL: "https:///api", APIKey: "k"},
			[]string{`url: must be an absolute http or https URL (got "https:///api")`}},
		{"other scheme", HeadscaleConfig{URL: "grpc://headscale", APIKey: "k"},
			[]string{`url: must be an absolute http or https URL (got "grpc://headscale")`}},
		{"unparsable", HeadscaleConfig{URL: "http://[::1", APIKey: "k"},
			[]string{"url: must be an absolute http or https URL"}},
		{"query", HeadscaleConfig{URL: url + "/?x=1", APIKey: "k"},
			[]string{`url: must not have a query or fragment (got "https://headscale.example.com/?x=1")`}},
		{"password redacted", HeadscaleConfig{URL: "ftp://u:hunter2@headscale", APIKey: "k"},
			[]string{`url: must be an absolute http or https URL (got "ftp://u:xxxxx@headscale")`}},
		{"negative durations", HeadscaleConfig{URL: url, APIKey: "k", Timeout: -1, ListMaxAge: -1},
			[]string{"timeout: must not be negative", "list_max_age: must not be negative"}},
		{"negative policy refresh", HeadscaleConfig{URL: url, APIKey: "k", PolicyRefresh: -time.Second},
			[]string{"policy_refresh: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrorLines(t, tt.cfg.Validate(), tt.want)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if len(c.Match) != 1 || c.Match[0] != "provider_id" || c.Unlinked != "deny" || c.TTL != time.Hour || c.NegativeTTL != time.Minute {
		t.Errorf("defaults: got %+v, want [provider_id], deny, 1h, 1m", c)
	}
	var h HeadscaleConfig
	h.SetDefaults()
	if h.Timeout != 5*time.Second || h.ListMaxAge != 5*time.Second {
		t.Errorf("defaults: got timeout %v and list_max_age %v, want 5s and 5s", h.Timeout, h.ListMaxAge)
	}
	if h.PolicyRefresh != time.Minute {
		t.Errorf("policy_refresh default: got %v, want 1m", h.PolicyRefresh)
	}
	if New(defaulted(Config{}), NewHeadscale(defaulted(h), nil), nil, Timing{}).AllowUnlinked() {
		t.Error("AllowUnlinked by default: got true, want false")
	}
	if !New(Config{Unlinked: "allow"}, NewHeadscale(defaulted(h), nil), nil, Timing{}).AllowUnlinked() {
		t.Error("AllowUnlinked with unlinked: allow: got false, want true")
	}
}

// checkErrorLines compares the lines of err (an errors.Join) with want.
func checkErrorLines(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("got %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got nil, want %q", want)
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}
