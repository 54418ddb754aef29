package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestStartTimeoutConfig: oidc.start_timeout defaults to 3s, and a negative one is refused by
// its YAML path.
func TestStartTimeoutConfig(t *testing.T) {
	c := Config{PublicURL: "https://gate.example.com", Upstream: "http://127.0.0.1:3000",
		OIDC: OIDCConfig{Issuer: "https://idp.example.com", ClientID: "headgate", ClientSecret: "s"}}
	c.SetDefaults()
	if got, want := c.OIDC.StartTimeout, 3*time.Second; got != want {
		t.Errorf("default: got %s, want %s", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.OIDC.StartTimeout = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "oidc.start_timeout: must not be negative") {
		t.Errorf("negative: got %v, want oidc.start_timeout: must not be negative", err)
	}
}

// TestLogoutTokenMaxAgeConfig: oidc.logout_token_max_age is off by default and refused,
// by its YAML path, below 0 or above an hour.
func TestLogoutTokenMaxAgeConfig(t *testing.T) {
	c := Config{PublicURL: "https://gate.example.com", Upstream: "http://127.0.0.1:3000",
		OIDC: OIDCConfig{Issuer: "https://idp.example.com", ClientID: "headgate", ClientSecret: "s"}}
	c.SetDefaults()
	if c.OIDC.LogoutTokenMaxAge != 0 {
		t.Errorf("default: got %s, want 0", c.OIDC.LogoutTokenMaxAge)
	}
	for _, d := range []time.Duration{2 * time.Minute, time.Hour} {
		c.OIDC.LogoutTokenMaxAge = d
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	for _, d := range []time.Duration{-time.Second, time.Hour + time.Second} {
		c.OIDC.LogoutTokenMaxAge = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "oidc.logout_token_max_age: must be between 0") {
			t.Errorf("%s: got %v, want oidc.logout_token_max_age refused", d, err)
		}
	}
}
