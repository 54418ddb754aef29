package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// StartCaddy runs bin (Caddy logs to its output) (the suite's Caddy, Stack's e2e/.bin/caddy) with a Caddyfile made of a
// global options block (no admin endpoint, no automatic HTTPS, storage in its directory) and
// site, from a new temporary directory. It checks the Caddyfile with caddy validate first, and
// waits until Caddy accepts connections on 127.0.0.1:port, which site must listen on.
func StartCaddy(ctx context.Context, bin string, port int, site string) (*FrontProxy, error) {
	dir, err := os.MkdirTemp("", "headgate-caddy-")
	if err != nil {
		return nil, fmt.Errorf("start caddy: %w", err)
	}
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	storage file_system %s
}

%s`, filepath.Join(dir, "data"), site)
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("start caddy: %w", err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	args := []string{"--config", confPath, "--adapter", "caddyfile"}
	validate := exec.CommandContext(ctx, bin, append([]string{"validate"}, args...)...)
	validate.Dir = dir
	validate.Env = append(os.Environ(), env...)
	if out, err := validate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("caddy validate: %w\n%s", err, out)
	}
	return startFrontProxy(ctx, "caddy", dir, port, "output.log", env, bin, append([]string{"run"}, args...)...)
}

// caddySite turns the README's caddyfile block into a site for StartCaddy: its site address
// (app.example.com) becomes http://ADDR, and the addresses of headgate (127.0.0.1:4180) and of
// the upstream (127.0.0.1:3000) become gatewayAddr and upstreamAddr. Nothing else changes.
func caddySite(block, addr, gatewayAddr, upstreamAddr string) string {
	return strings.NewReplacer("app.example.com {", "http://"+addr+" {",
		"127.0.0.1:4180", gatewayAddr, "127.0.0.1:3000", upstreamAddr).Replace(block)
}
