package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podman runs Debian's podman against an image store of its own, in a directory of the test,
// so that tests never meet each other's images or the machine's.
type podman struct {
	t    *testing.T
	bin  string
	args []string // global flags: the store, its driver and the runtime
}

// newPodman returns a podman on a fresh store, removed when t ends. It fails t, saying what
// to install, when podman or runc is missing.
func newPodman(t *testing.T) *podman {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed: apt-get install podman runc (.ci/run installs both)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc is not installed: apt-get install runc (.ci/run installs it)")
	}
	dir := t.TempDir()
	return &podman{t: t, bin: bin, args: []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		// vfs needs no kernel overlay support; runc, unlike Debian's crun 1.8, starts
		// containers on a machine with both cgroup hierarchies mounted (the "hybrid" layout).
		"--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
	}}
}

// run runs podman with args and returns its standard output, trimmed. A failure carries its
// standard error.
func (p *podman) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, p.bin, append(append([]string{}, p.args...), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// must runs podman with args, failing t on an error, and returns its standard output.
func (p *podman) must(args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.t.Context()), 5*time.Minute)
	defer cancel()
	out, err := p.run(ctx, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// logs returns the log of container name: what it wrote to its standard output and error,
// which podman logs writes to its own.
func (p *podman) logs(ctx context.Context, name string) (string, error) {
	args := append(append([]string{}, p.args...), "logs", name)
	out, err := exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("podman logs %s: %w: %s", name, err, out)
	}
	return string(out), nil
}

// removeAtEnd removes container name (running or not) when t ends, showing its log when t
// failed.
func (p *podman) removeAtEnd(name string) {
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if p.t.Failed() {
			logs, err := p.logs(ctx, name)
			p.t.Logf("log of container %s (%v):\n%s", name, err, logs)
		}
		if _, err := p.run(ctx, "rm", "--force", "--time", "1", name); err != nil {
			p.t.Logf("remove container %s: %v", name, err)
		}
	})
}

// copyFile copies the file src to dst, making dst's directory.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, info.Mode().Perm())
}
