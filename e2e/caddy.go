package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Caddy is a Caddy process run from a directory of its own: its Caddyfile, its log, and the
// data and configuration directories Caddy would otherwise put under $HOME.
type Caddy struct {
	// URL is http://127.0.0.1:PORT.
	URL string
	// Dir holds Caddyfile and caddy.log.
	Dir string

	proc *process
}

// StartCaddy runs bin (the suite's Caddy, Stack's e2e/.bin/caddy) with a Caddyfile made of a
// global options block (no admin endpoint, no automatic HTTPS, storage in its directory) and
// site, from a new temporary directory. It checks the Caddyfile with caddy validate first, and
// waits until Caddy accepts connections on 127.0.0.1:port, which site must listen on.
func StartCaddy(ctx context.Context, bin string, port int, site string) (*Caddy, error) {
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
	p, err := startProcessEnv("caddy", dir, filepath.Join(dir, "caddy.log"), env, bin, append([]string{"run"}, args...)...)
	if err != nil {
		return nil, err
	}
	c := &Caddy{URL: "http://" + hostPort(port), Dir: dir, proc: p}
	if err := p.waitTCP(ctx, hostPort(port), 10*time.Second, nil); err != nil {
		p.stop()
		return nil, fmt.Errorf("start caddy: %w\n--- %s/caddy.log ---\n%s", err, dir, c.Log(20))
	}
	return c, nil
}

// Log returns the last n lines of Caddy's log, for failure messages.
func (c *Caddy) Log(lines int) string {
	return tailFile(filepath.Join(c.Dir, "caddy.log"), lines)
}

// Close ends Caddy (SIGTERM, then SIGKILL after five seconds) and removes its directory
// unless keep is set.
func (c *Caddy) Close(keep bool) {
	c.proc.stop()
	if !keep {
		os.RemoveAll(c.Dir)
	}
}

// caddySite turns the README's caddyfile block into a site for StartCaddy: its site address
// (app.example.com) becomes http://ADDR, and the addresses of headgate (127.0.0.1:4180) and of
// the upstream (127.0.0.1:3000) become gatewayAddr and upstreamAddr. Nothing else changes.
func caddySite(block, addr, gatewayAddr, upstreamAddr string) string {
	return strings.NewReplacer("app.example.com {", "http://"+addr+" {",
		"127.0.0.1:4180", gatewayAddr, "127.0.0.1:3000", upstreamAddr).Replace(block)
}
