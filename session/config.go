package session

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config configures the session and login cookies.
type Config struct {
	// Secret seals and opens the cookies: one secret, or a list of them to rotate secrets. The
	// first seals new cookies and every one opens existing ones, so adding a new secret in
	// front signs nobody out; drop the old one after a lifetime has passed. Each must be at
	// least 32 bytes of random text. Either secret or secret_file is required.
	Secret Secrets `yaml:"secret"`

	// SecretFile names a file holding the secrets instead, one per non-empty line, first line
	// first.
	SecretFile string `yaml:"secret_file"`

	// Lifetime is how long a session lasts after sign-in. Default 12h.
	Lifetime time.Duration `yaml:"lifetime"`

	// CookieName names the session cookie; each sign-in attempt also sets a short-lived cookie
	// whose name starts with it. Default "_headgate". With an https public_url and no
	// cookie_domain, headgate puts "__Host-" in front ("__Host-_headgate"), so that the browser
	// keeps the cookie only if this host set it Secure and host-only, and no other subdomain
	// can plant a session of its own. A name that already starts with "__Host-" is used as it
	// is and needs an https public_url and no cookie_domain. Cookies set under the other
	// spelling (before an upgrade that added the prefix, say) are never accepted: their owners
	// sign in again once. They are still kept from the upstream.
	CookieName string `yaml:"cookie_name"`

	// CookieDomain is the cookie's Domain attribute, to share the session with sub-domains.
	// Empty: a host-only cookie, named with the "__Host-" prefix on https. Setting it drops
	// that prefix and trusts every host under the domain: any of them can set a cookie that
	// the browser sends to headgate. When a request carries live session cookies of two
	// different sessions, headgate uses neither and asks for a new sign-in.
	CookieDomain string `yaml:"cookie_domain"`

	// LoginTimeout is how long a sign-in may take at the identity provider. Default 10m.
	LoginTimeout time.Duration `yaml:"login_timeout"`
}

// Secrets is one secret or several. In YAML it is a string or a list of strings.
type Secrets []string

// UnmarshalYAML accepts a single string as well as a list of strings. Its error is a
// *yaml.TypeError that never repeats a value.
func (s *Secrets) UnmarshalYAML(n *yaml.Node) error {
	errKind := &yaml.TypeError{Errors: []string{"expected a string or a list of strings"}}
	if n.Kind == yaml.ScalarNode {
		var one string
		if err := n.Decode(&one); err != nil {
			return errKind
		}
		*s = nil
		if one != "" {
			*s = Secrets{one}
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return errKind
	}
	for _, e := range n.Content {
		if e.Kind == yaml.AliasNode && e.Alias != nil {
			e = e.Alias
		}
		if e.Kind != yaml.ScalarNode {
			return errKind
		}
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return errKind
	}
	*s = list
	return nil
}

// Defaults that SetDefaults applies to zero fields.
const (
	defaultLifetime     = 12 * time.Hour
	defaultCookieName   = "_headgate"
	defaultLoginTimeout = 10 * time.Minute
)

// minSecretLen is the shortest secret accepted: with fewer bytes of entropy than the keys it
// derives, a secret would be the weakest part of the cookie.
const minSecretLen = 32

// Validate reports every problem of the configuration at once. It does no I/O: a secret_file
// that is set but not yet read is fine.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.Secret) > 0 && c.SecretFile != "":
		errs = append(errs, errors.New("secret_file: must not be set together with secret"))
	case len(c.Secret) == 0 && c.SecretFile == "":
		errs = append(errs, errors.New("secret: required (or secret_file)"))
	}
	for i, s := range c.Secret {
		if len(s) >= minSecretLen {
			continue
		}
		key := "secret"
		if len(c.Secret) > 1 {
			key = fmt.Sprintf("secret[%d]", i)
		}
		errs = append(errs, fmt.Errorf("%s: must be at least %d bytes (got %d)", key, minSecretLen, len(s)))
	}
	if c.Lifetime < 0 {
		errs = append(errs, errors.New("lifetime: must not be negative"))
	}
	if c.LoginTimeout < 0 {
		errs = append(errs, errors.New("login_timeout: must not be negative"))
	}
	if c.CookieName != "" && (&http.Cookie{Name: c.CookieName}).Valid() != nil {
		errs = append(errs, fmt.Errorf("cookie_name: must be a valid cookie name (got %q)", c.CookieName))
	}
	if c.CookieDomain != "" {
		if (&http.Cookie{Name: "x", Domain: c.CookieDomain}).Valid() != nil {
			errs = append(errs, fmt.Errorf("cookie_domain: must be a domain name (got %q)", c.CookieDomain))
		}
		if strings.HasPrefix(c.CookieName, "__Host-") {
			errs = append(errs, errors.New("cookie_domain: must be empty for a __Host- cookie_name"))
		}
	}
	return errors.Join(errs...)
}

// SetDefaults sets every zero field to the default its comment names. It is the one place
// defaults are applied: loading gateway.yaml calls it once, before Validate, and whatever
// builds a config in code calls it the same way; constructors take the config as it is.
func (c *Config) SetDefaults() {
	if c.Lifetime == 0 {
		c.Lifetime = defaultLifetime
	}
	if c.CookieName == "" {
		c.CookieName = defaultCookieName
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = defaultLoginTimeout
	}
}
