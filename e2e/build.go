package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Packages of the peers, built from the Go module proxy through the tools module in
// e2e/tools, which pins Headscale v0.29.3, Dex v2.45.1 and Caddy v2.11.9.
const (
	headscalePackage = "github.com/juanfont/headscale/cmd/headscale"
	dexPackage       = "github.com/dexidp/dex/cmd/dex"
	caddyPackage     = "github.com/caddyserver/caddy/v2/cmd/caddy"
)

// repoRoot finds the headgate module's root: the directory holding go.mod and
// e2e/tools/go.mod. It tries this source file's location first (right for go test and go run
// from a checkout), then the go command's view of the working directory.
func repoRoot(ctx context.Context) (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Dir(filepath.Dir(file)))
	}
	if out, err := runCommand(ctx, "", "go", "env", "GOMOD"); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			candidates = append(candidates, filepath.Dir(gomod))
		}
	}
	for _, dir := range candidates {
		if isRepoRoot(dir) {
			return dir, nil
		}
	}
	return "", errors.New("find the headgate checkout: run from inside it (no go.mod with e2e/tools/go.mod found)")
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.HasPrefix(string(data), "module headgate\n") {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "e2e", "tools", "go.mod"))
	return err == nil
}

// binaries are the paths of the executables a stack runs.
type binaries struct {
	headscale, dex, caddy, headgate string
}

// peerBinaries returns the Headscale, Dex and Caddy binaries in root/e2e/.bin, building each
// one that is missing (about 4 minutes with an empty module and build cache, under 20 seconds
// with a warm one).
func peerBinaries(ctx context.Context, root string, logf func(string, ...any)) (binaries, error) {
	bin := filepath.Join(root, "e2e", ".bin")
	b := binaries{
		headscale: filepath.Join(bin, "headscale"),
		dex:       filepath.Join(bin, "dex"),
		caddy:     filepath.Join(bin, "caddy"),
		headgate:  filepath.Join(bin, "headgate"),
	}
	for _, p := range []struct{ path, pkg string }{{b.headscale, headscalePackage}, {b.dex, dexPackage}, {b.caddy, caddyPackage}} {
		if _, err := os.Stat(p.path); err == nil {
			continue
		}
		logf("building %s (the first build takes a few minutes)", filepath.Base(p.path))
		start := time.Now()
		if err := goBuild(ctx, filepath.Join(root, "e2e", "tools"), p.path, p.pkg); err != nil {
			return b, fmt.Errorf("build %s from the tools module (cd e2e/tools && go build -o ../.bin/%s %s): %w",
				filepath.Base(p.path), filepath.Base(p.path), p.pkg, err)
		}
		logf("built %s in %s", filepath.Base(p.path), time.Since(start).Round(time.Second))
	}
	return b, nil
}

// buildHeadgate builds the headgate binary from the checkout, always: the suite tests the code
// as it is now.
func buildHeadgate(ctx context.Context, root, out string) error {
	if err := goBuild(ctx, root, out, "."); err != nil {
		return fmt.Errorf("build headgate (go build -o e2e/.bin/headgate .): %w", err)
	}
	return nil
}

// goBuild builds pkg in dir into out. It writes to a temporary name of its own first, so that
// an interrupted build never leaves a truncated binary that a later run would take as built,
// and builds of the same binary at once (stacks starting in parallel) never share one.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	if _, err := runCommand(ctx, dir, "go", "build", "-o", tmp, pkg); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
