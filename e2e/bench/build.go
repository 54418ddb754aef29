package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// oauth2ProxyPackage is built from the tools module in e2e/tools, which pins v7.15.6.
const oauth2ProxyPackage = "github.com/oauth2-proxy/oauth2-proxy/v7"

// repoRoot finds the headgate checkout from the working directory upwards: the directory
// whose go.mod is module headgate and that holds e2e/tools/go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module headgate\n") {
			if _, err := os.Stat(filepath.Join(dir, "e2e", "tools", "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find the headgate checkout: run from inside it (go run ./e2e/bench)")
		}
		dir = parent
	}
}

// oauth2ProxyBinary returns e2e/.bin/oauth2-proxy, building it through the tools module when
// it is missing.
func oauth2ProxyBinary(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	out := filepath.Join(root, "e2e", ".bin", "oauth2-proxy")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	logf("building oauth2-proxy (the first build takes a few minutes)")
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	// A temporary name first, so that an interrupted build never leaves a truncated binary.
	tmp := fmt.Sprintf("%s.tmp%d", out, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, oauth2ProxyPackage)
	cmd.Dir = filepath.Join(root, "e2e", "tools")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build oauth2-proxy (cd e2e/tools && go build -o ../.bin/oauth2-proxy %s): %w\n%s",
			oauth2ProxyPackage, err, output.String())
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	logf("built oauth2-proxy in %s", time.Since(start).Round(time.Second))
	return out, nil
}
