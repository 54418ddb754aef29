package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

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
