package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// StartCaddy runs the stack's Caddy (BinDir/caddy, built from tools/peers) with a Caddyfile
// made of a global options block (no admin endpoint, no automatic HTTPS, storage in its
// directory) and site, from a new temporary directory; Caddy logs to its output. It checks the
// Caddyfile with caddy validate first, and waits until Caddy accepts connections on
// 127.0.0.1:port, which site must listen on.
func (s *Stack) StartCaddy(ctx context.Context, port int, site string) (*FrontProxy, error) {
	bin := s.bin.caddy
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
