package linker

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config is the yaml section `link`: how an identity is matched to a Headscale user and how
// long the answer is trusted.
type Config struct {
	// Match lists the ways an identity may be linked to a Headscale user, tried in order.
	// "provider_id" takes the user Headscale created when this same identity signed in to
	// Headscale (its providerId is the issuer and subject). "email" takes the one user created
	// with the CLI or API (no providerId) whose email equals the identity's verified email,
	// ignoring case, and only when no other user at all has that email. Default [provider_id].
	Match []string `yaml:"match"`

	// Unlinked is what happens to a signed-in person without a Headscale user: "deny" (default)
	// refuses them, "allow" lets them through without Headscale identity headers.
	Unlinked string `yaml:"unlinked"`

	// TTL is how long a found link is trusted before Headscale is asked again; a renamed or
	// deleted user shows up after at most this long. Default 1h.
	TTL time.Duration `yaml:"ttl"`

	// NegativeTTL is how long "no Headscale user" is remembered, so a person who was just
	// given a user waits at most this long. Default 1m.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
}

// HeadscaleConfig is the yaml section `headscale`: where its API is and how to call it.
type HeadscaleConfig struct {
	// URL is Headscale's base URL, http or https, e.g. "https://headscale.example.com".
	// Required. A path is kept: the API is expected under URL + "/api/v1".
	URL string `yaml:"url"`

	// APIKey is a Headscale API key (`headscale apikeys create`). It only needs to list users and
	// read the policy. Either api_key or api_key_file is required.
	APIKey string `yaml:"api_key"`

	// APIKeyFile names a file holding the API key instead; surrounding whitespace is ignored.
	APIKeyFile string `yaml:"api_key_file"`

	// Timeout bounds one Headscale call, including reading the whole user list. Default 5s.
	Timeout time.Duration `yaml:"timeout"`

	// ListMaxAge is how long one user listing also answers the sign-ins of other people not yet
	// linked, so a burst of sign-ins costs Headscale one listing. A link that is being re-checked
	// after its TTL always gets a listing newer than itself. Default 5s; zero means the default.
	ListMaxAge time.Duration `yaml:"list_max_age"`

	// PolicyRefresh is how often the groups of Headscale's ACL policy are read again (with the
	// user list they name); a change to the policy or to its users shows up after at most this
	// long. While Headscale cannot answer, the groups last read stay in force. Default 1m; zero
	// means the default.
	PolicyRefresh time.Duration `yaml:"policy_refresh"`
}

// The strategy names accepted in Config.Match.
const (
	matchProviderID = "provider_id"
	matchEmail      = "email"
	// matchUserID is the Method of a link ResolveUser made; it cannot be configured.
	matchUserID = "user_id"
)

// Defaults that SetDefaults applies to zero fields.
const (
	defaultTTL           = time.Hour
	defaultNegativeTTL   = time.Minute
	defaultTimeout       = 5 * time.Second
	defaultListMaxAge    = 5 * time.Second
	defaultPolicyRefresh = time.Minute
)

// Validate reports every problem of the configuration at once. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	seen := make(map[string]bool, len(c.Match))
	for i, m := range c.Match {
		switch {
		case m != matchProviderID && m != matchEmail:
			errs = append(errs, fmt.Errorf("match[%d]: unknown strategy %q (want %s or %s)", i, m, matchProviderID, matchEmail))
		case seen[m]:
			errs = append(errs, fmt.Errorf("match[%d]: duplicate strategy %q", i, m))
		}
		seen[m] = true
	}
	switch c.Unlinked {
	case "", "deny", "allow":
	default:
		errs = append(errs, fmt.Errorf("unlinked: must be deny or allow (got %q)", c.Unlinked))
	}
	if c.TTL < 0 {
		errs = append(errs, errors.New("ttl: must not be negative"))
	}
	if c.NegativeTTL < 0 {
		errs = append(errs, errors.New("negative_ttl: must not be negative"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the configuration at once. It does no I/O: an api_key_file
// that is set but not yet read is fine. Messages never contain the API key.
func (c HeadscaleConfig) Validate() error {
	var errs []error
	if err := validateURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.APIKey != "" && c.APIKeyFile != "":
		errs = append(errs, errors.New("api_key_file: must not be set together with api_key"))
	case c.APIKey == "" && c.APIKeyFile == "":
		errs = append(errs, errors.New("api_key: required (or api_key_file)"))
	case strings.ContainsFunc(c.APIKey, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		// Such a key cannot travel in a header; say so before the first call fails.
		errs = append(errs, errors.New("api_key: must not contain spaces or control characters"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if c.ListMaxAge < 0 {
		errs = append(errs, errors.New("list_max_age: must not be negative"))
	}
	if c.PolicyRefresh < 0 {
		errs = append(errs, errors.New("policy_refresh: must not be negative"))
	}
	return errors.Join(errs...)
}

// validateURL checks the Headscale URL. It never echoes a URL it could not parse, and shows a
// parsed one with any password redacted.
func validateURL(raw string) error {
	if raw == "" {
		return errors.New("url: required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("url: must be an absolute http or https URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("url: must be an absolute http or https URL (got %q)", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("url: must not have a query or fragment (got %q)", u.Redacted())
	}
	return nil
}

// SetDefaults sets every zero field to the default its comment names. It is the one place
// defaults are applied: loading gateway.yaml calls it once, before Validate, and whatever
// builds a config in code calls it the same way; constructors take the config as it is.
func (c *Config) SetDefaults() {
	if len(c.Match) == 0 {
		c.Match = []string{matchProviderID}
	}
	if c.Unlinked == "" {
		c.Unlinked = "deny"
	}
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = defaultNegativeTTL
	}
}

// SetDefaults sets every zero field to the default its comment names. It is the one place
// defaults are applied: loading gateway.yaml calls it once, before Validate, and whatever
// builds a config in code calls it the same way; constructors take the config as it is.
func (c *HeadscaleConfig) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.ListMaxAge == 0 {
		c.ListMaxAge = defaultListMaxAge
	}
	if c.PolicyRefresh == 0 {
		c.PolicyRefresh = defaultPolicyRefresh
	}
}
