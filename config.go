package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"headgate/gateway"
	"headgate/linker"
	"headgate/session"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// Config is the schema of gateway.yaml. Each section is owned by the package that uses it;
// this file only composes them, loads the file and reports every problem at once.
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
)

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

// options turns the URL into go-redis options for the selected mode.
func (c RedisConfig) options() (*redis.UniversalOptions, error) {
	mode := c.Mode
	if mode == "" {
		mode = "standalone"
		if strings.Contains(c.URL, "master_name=") {
			mode = "sentinel"
		}
	}
	var o redis.UniversalOptions
	switch mode {
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

// loadConfig reads, expands, decodes and validates the configuration file at path. Every
// problem found is reported at once, each with its YAML path: unknown keys, values of the wrong
// type, unset environment variables, unreadable secret files and every Validate failure.
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
	var errs []error
	prepare(&root, lookupEnv, &errs)
	canonical, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(canonical))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		errs = append(errs, decodeErrors(canonical, te)...)
	}
	errs = append(errs, readSecretFiles(&cfg, filepath.Dir(path))...)
	if err := cfg.Validate(); err != nil {
		errs = append(errs, flatten("", err)...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s:\n%w", path, errors.Join(errs...))
	}
	return &cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// walk calls visit for n and every value below it (not mapping keys), with each one's YAML path.
func walk(n *yaml.Node, path string, visit func(n *yaml.Node, path string)) {
	if n.Kind != yaml.DocumentNode {
		visit(n, path)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, path, visit)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], joinPath(path, n.Content[i].Value), visit)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walk(c, fmt.Sprintf("%s[%d]", path, i), visit)
		}
	}
}

// prepare readies the parsed document for decoding. It replaces ${VAR} in every scalar value
// with the environment's value; expansion happens after parsing, so a value cannot change the
// document's structure, and an unset variable is an error (a set but empty one expands to "").
// It also clears the flow style of mappings and sequences, so that once re-emitted every key and
// value has a line of its own: the decoder reports problems by line, and each line then names
// exactly one YAML path.
func prepare(root *yaml.Node, lookupEnv func(string) (string, bool), errs *[]error) {
	walk(root, "", func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode, yaml.SequenceNode:
			n.Style = 0
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "${") {
				return
			}
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
				name := ref[2 : len(ref)-1]
				v, ok := lookupEnv(name)
				if !ok {
					*errs = append(*errs, fmt.Errorf("%s: environment variable %s is not set", path, name))
				}
				return v
			})
			// An expanded value is data, never YAML: it stays a string.
			n.Tag = "!!str"
			n.Style = yaml.DoubleQuotedStyle
		}
	})
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	unknownField = regexp.MustCompile("^line (\\d+): field (\\S+) not found in type")
	badValue     = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// decodeErrors turns the decoder's line-numbered messages into messages that name YAML paths.
func decodeErrors(canonical []byte, te *yaml.TypeError) []error {
	var doc yaml.Node
	_ = yaml.Unmarshal(canonical, &doc)
	keys := map[int]string{}   // line of a key -> path of the mapping holding it
	values := map[int]string{} // line of a value -> its path
	indexLines(&doc, keys, values)
	var errs []error
	for _, msg := range te.Errors {
		if m := unknownField.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			errs = append(errs, fmt.Errorf("%s: unknown key", joinPath(keys[line], m[2])))
			continue
		}
		if m := badValue.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			p := values[line]
			if m[4] == "time.Duration" {
				errs = append(errs, fmt.Errorf("%s: invalid duration %q (use a number and a unit, such as 90s, 15m or 12h)", p, m[3]))
			} else {
				errs = append(errs, fmt.Errorf("%s: expected %s, got %s %q", p, typeName(m[4]), m[2], m[3]))
			}
			continue
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

func typeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "bool", goType == "*bool":
		return "true or false"
	case goType == "string":
		return "a string"
	default:
		return "a value of another type"
	}
}

// indexLines maps the line of each key to the path of the mapping holding it, and the line of
// each value to its path.
func indexLines(doc *yaml.Node, keys, values map[int]string) {
	walk(doc, "", func(n *yaml.Node, path string) {
		values[n.Line] = path
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				keys[n.Content[i].Line] = path
			}
		}
	})
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
	if f := c.Redis.PasswordFile; f != "" {
		if v, ok := read("redis.password_file", f); ok {
			c.Redis.password = v
		}
	}
	return errs
}
