package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"headgate/gateway"
	"headgate/linker"
	"headgate/session"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// Config is the schema of gateway.yaml. Each section is owned by the package that uses it;
// this file composes them, and loadConfig reads the file into one (checking it against the
// schema in configdecode.go).
type Config struct {
	// Listen is the address headgate serves on. Default 127.0.0.1:4180.
	Listen string `yaml:"listen"`

	// MetricsListen is the address of the Prometheus /metrics endpoint, kept off the public
	// listener. Empty: no metrics endpoint.
	MetricsListen string `yaml:"metrics_listen"`

	// ShutdownTimeout is how long in-flight requests may take to finish after SIGTERM.
	// Server-Sent Events streams are ended cleanly at once, since they never finish by
	// themselves; whatever is still open at the deadline is closed. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Gateway holds public_url, upstream, skip_auth, oidc and the other top-level keys of the
	// HTTP surface.
	Gateway gateway.Config `yaml:",inline"`

	// Headscale is the Headscale API that identities are linked against.
	Headscale linker.HeadscaleConfig `yaml:"headscale"`

	// Link chooses how an identity is matched to a Headscale user and how long a match is kept.
	Link linker.Config `yaml:"link"`

	// Session configures the session cookie and its lifetime.
	Session session.Config `yaml:"session"`

	// Redis is the shared store of sessions and links. Without it headgate keeps them in
	// process, which is right for exactly one instance.
	Redis RedisConfig `yaml:"redis"`

	// Log configures headgate's own log.
	Log LogConfig `yaml:"log"`
}

// RedisConfig selects the Redis deployment shared by every headgate instance.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port/db (rediss:// for TLS). For Sentinel add
	// ?master_name=NAME&addr=HOST:PORT for each further sentinel; for Cluster set mode: cluster
	// and add &addr=HOST:PORT for each further node. Empty: the in-process store.
	URL string `yaml:"url"`

	// Mode is standalone, sentinel or cluster. Default: sentinel when the URL has master_name,
	// standalone otherwise.
	Mode string `yaml:"mode"`

	// PasswordFile names a file holding the Redis password, which then overrides the URL's.
	PasswordFile string `yaml:"password_file"`

	// KeyPrefix starts every key headgate writes, so instances of different deployments can
	// share a server. Default "headgate:".
	KeyPrefix string `yaml:"key_prefix"`

	// Timeout bounds each Redis command, including the dial. Redis is off the per-request
	// path, so this only bounds sign-ins and first sightings of a session. Default 1s.
	Timeout time.Duration `yaml:"timeout"`

	// password is read from PasswordFile by loadConfig.
	password string
}

// LogConfig configures headgate's log on standard error.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

const (
	defaultListen          = "127.0.0.1:4180"
	defaultShutdownTimeout = 10 * time.Second
	defaultRedisPrefix     = "headgate:"
	defaultRedisTimeout    = time.Second
	defaultLogLevel        = "info"
	defaultLogFormat       = "text"
)

// setDefaults sets every zero field of every section to its default. loadConfig calls it once,
// before Validate; run takes the values as they are (the constructors' own SetDefaults calls
// find nothing left to do).
func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = defaultShutdownTimeout
	}
	c.Gateway.SetDefaults()
	c.Headscale.SetDefaults()
	c.Link.SetDefaults()
	c.Session.SetDefaults()
	c.Redis.setDefaults()
	c.Log.setDefaults()
}

// setDefaults sets the zero fields of the Redis section to their defaults. The mode follows
// the URL, so it is only chosen when there is one.
func (c *RedisConfig) setDefaults() {
	if c.URL != "" && c.Mode == "" {
		c.Mode = "standalone"
		if strings.Contains(c.URL, "master_name=") {
			c.Mode = "sentinel"
		}
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = defaultRedisPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = defaultRedisTimeout
	}
}

// setDefaults sets the zero fields of the log section to their defaults.
func (c *LogConfig) setDefaults() {
	if c.Level == "" {
		c.Level = defaultLogLevel
	}
	if c.Format == "" {
		c.Format = defaultLogFormat
	}
}

// Validate reports every problem at once, each prefixed by its YAML path. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown_timeout: must not be negative"))
	}
	errs = append(errs, flatten("", c.Gateway.Validate())...)
	errs = append(errs, flatten("headscale.", c.Headscale.Validate())...)
	errs = append(errs, flatten("link.", c.Link.Validate())...)
	errs = append(errs, flatten("session.", c.Session.Validate())...)
	errs = append(errs, flatten("redis.", c.Redis.Validate())...)
	errs = append(errs, flatten("log.", c.Log.Validate())...)
	return errors.Join(errs...)
}

// Validate checks the Redis section without connecting.
func (c RedisConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		if c.Mode != "" || c.PasswordFile != "" {
			errs = append(errs, errors.New("url: required when mode or password_file is set"))
		}
	} else if _, err := c.options(); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	switch c.Mode {
	case "", "standalone", "sentinel", "cluster":
	default:
		errs = append(errs, fmt.Errorf("mode: must be standalone, sentinel or cluster (got %q)", c.Mode))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// options turns the URL into go-redis options for the selected mode (setDefaults chose one
// when the file did not).
func (c RedisConfig) options() (*redis.UniversalOptions, error) {
	var o redis.UniversalOptions
	switch c.Mode {
	case "sentinel":
		f, err := redis.ParseFailoverURL(c.URL)
		if err != nil {
			return nil, redisURLError(err)
		}
		o = redis.UniversalOptions{Addrs: f.SentinelAddrs, MasterName: f.MasterName, DB: f.DB,
			Username: f.Username, Password: f.Password, SentinelUsername: f.SentinelUsername,
			SentinelPassword: f.SentinelPassword, TLSConfig: f.TLSConfig}
	case "cluster":
		f, err := redis.ParseClusterURL(c.URL)
		if err != nil {
			return nil, redisURLError(err)
		}
		o = redis.UniversalOptions{Addrs: f.Addrs, IsClusterMode: true,
			Username: f.Username, Password: f.Password, TLSConfig: f.TLSConfig}
	default:
		f, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, redisURLError(err)
		}
		o = redis.UniversalOptions{Addrs: []string{f.Addr}, DB: f.DB,
			Username: f.Username, Password: f.Password, TLSConfig: f.TLSConfig}
	}
	return &o, nil
}

// redisURLError keeps a password that may be in the URL out of the message.
func redisURLError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return errors.New("not a valid Redis URL")
	}
	return errors.New(msg)
}

// Validate checks the log section.
func (c LogConfig) Validate() error {
	var errs []error
	switch c.Level {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("level: must be debug, info, warn or error (got %q)", c.Level))
	}
	switch c.Format {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("format: must be text or json (got %q)", c.Format))
	}
	return errors.Join(errs...)
}

// flatten prefixes each error joined in err with prefix.
func flatten(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(prefix, e)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// loadConfig reads, expands, decodes, completes and validates the configuration file at path.
// Every problem found is reported at once: unknown and duplicate keys, values of the wrong
// kind, unset environment variables (each with its line and YAML path), unreadable secret
// files and every Validate failure. Defaults are applied once, here, before Validate.
func loadConfig(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty configuration", path)
	}
	var cfg Config
	d := newNodeDecoder(lookupEnv)
	d.decode(root.Content[0], reflect.ValueOf(&cfg).Elem(), "")
	errs := d.problems
	errs = append(errs, readSecretFiles(&cfg, filepath.Dir(path))...)
	cfg.setDefaults()
	for _, err := range flatten("", cfg.Validate()) {
		if !d.explains(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s:\n%w", path, errors.Join(errs...))
	}
	return &cfg, nil
}

// readSecretFiles loads each *_file secret whose inline counterpart is empty. When both are
// set, both are kept so that Validate reports the conflict.
func readSecretFiles(c *Config, dir string) []error {
	var errs []error
	read := func(key, file string) (string, bool) {
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	if f := c.Gateway.OIDC.ClientSecretFile; f != "" && c.Gateway.OIDC.ClientSecret == "" {
		if v, ok := read("oidc.client_secret_file", f); ok {
			c.Gateway.OIDC.ClientSecret, c.Gateway.OIDC.ClientSecretFile = v, ""
		}
	}
	if f := c.Gateway.Tailnet.AuthKeyFile; f != "" && c.Gateway.Tailnet.AuthKey == "" {
		if v, ok := read("tailnet.auth_key_file", f); ok {
			c.Gateway.Tailnet.AuthKey, c.Gateway.Tailnet.AuthKeyFile = v, ""
		}
	}
	if f := c.Headscale.APIKeyFile; f != "" && c.Headscale.APIKey == "" {
		if v, ok := read("headscale.api_key_file", f); ok {
			c.Headscale.APIKey, c.Headscale.APIKeyFile = v, ""
		}
	}
	if f := c.Session.SecretFile; f != "" && len(c.Session.Secret) == 0 {
		if v, ok := read("session.secret_file", f); ok {
			var secrets []string
			for _, line := range strings.Split(v, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					secrets = append(secrets, line)
				}
			}
			c.Session.Secret, c.Session.SecretFile = secrets, ""
		}
	}
	for i, f := range c.Gateway.Assertion.KeyFiles {
		if v, ok := read(fmt.Sprintf("assertion.key_files[%d]", i), f); ok {
			c.Gateway.Assertion.Keys = append(c.Gateway.Assertion.Keys, v)
		}
	}
	c.Gateway.Assertion.KeyFiles = nil
	if f := c.Redis.PasswordFile; f != "" {
		if v, ok := read("redis.password_file", f); ok {
			c.Redis.password = v
		}
	}
	return errs
}
