package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Packages of the peers, built from the Go module proxy through the tools module in
// tools/peers, which pins Headscale v0.29.3, Dex v2.45.1, Caddy v2.11.9 and oauth2-proxy v7.15.6.
// Older Headscale releases come from a tools module each (see headscaleReleases).
const (
	headscalePackage = "github.com/juanfont/headscale/cmd/headscale"
	dexPackage       = "github.com/dexidp/dex/cmd/dex"
	caddyPackage     = "github.com/caddyserver/caddy/v2/cmd/caddy"
)

// RepoRoot finds the headgate checkout: the directory whose go.mod is module headgate and
// that holds tools/peers/go.mod. It looks upwards from this source file's directory first
// (right for go test and go run in a checkout, whatever the working directory), then from the
// working directory (for a binary built with -trimpath).
func RepoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			if isRepoRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("find the headgate checkout: run from inside it (no go.mod of module headgate beside tools/peers/go.mod found)")
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.HasPrefix(string(data), "module headgate\n") {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "tools", "peers", "go.mod"))
	return err == nil
}

// BinDir is where a checkout keeps the binaries its stacks run, relative to RepoRoot.
const BinDir = "e2e/.bin"

// binaries are the paths of the executables a stack runs.
type binaries struct {
	headscale, dex, caddy, headgate string
}

// peerBinaries returns the Headscale (of release hs), Dex and Caddy binaries in root/BinDir,
// building each one that is missing (about 4 minutes with an empty module and build cache,
// under 20 seconds with a warm one). The headgate binary is left for the caller to place.
func peerBinaries(ctx context.Context, root string, hs headscaleRelease, logf func(string, ...any)) (binaries, error) {
	var b binaries
	var err error
	if b.headscale, err = hs.tool().binary(ctx, root, logf); err != nil {
		return b, err
	}
	for _, p := range []struct {
		path      *string
		name, pkg string
	}{{&b.dex, "dex", dexPackage}, {&b.caddy, "caddy", caddyPackage}} {
		if *p.path, err = PeerBinary(ctx, root, p.name, p.pkg, logf); err != nil {
			return b, err
		}
	}
	return b, nil
}

// HeadscaleBinary returns root/BinDir's binary of the Headscale release version (empty: the
// default), building it from the release's tools module when it is missing.
func HeadscaleBinary(ctx context.Context, root, version string, logf func(string, ...any)) (string, error) {
	hs, err := findHeadscaleRelease(version)
	if err != nil {
		return "", err
	}
	return hs.tool().binary(ctx, root, logf)
}

// tool is the build of the release's binary from its tools module.
func (hs headscaleRelease) tool() toolBuild {
	return toolBuild{module: hs.module, name: hs.binary, pkg: headscalePackage}
}

// PeerBinary returns root/BinDir/name, building it from pkg (a package the tools module in
// tools/peers pins, such as oauth2-proxy's) when it is missing.
func PeerBinary(ctx context.Context, root, name, pkg string, logf func(string, ...any)) (string, error) {
	return toolBuild{module: "peers", name: name, pkg: pkg}.binary(ctx, root, logf)
}

// toolBuild is a binary built from pkg, which the tools module in tools/module pins, into
// BinDir/name.
type toolBuild struct {
	module, name, pkg string
	flags             []string // for go build, such as -tags
	// current reports whether the binary at path is the one to use; nil: any binary there is.
	current func(path string) bool
}

// binary returns root/BinDir/name, building it when it is missing or not current.
func (b toolBuild) binary(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	out := filepath.Join(root, BinDir, b.name)
	built := func() bool {
		if b.current != nil {
			return b.current(out)
		}
		_, err := os.Stat(out)
		return err == nil
	}
	err := buildOnce(out, built, func() error {
		logf("building %s (the first build takes a few minutes)", b.name)
		start := time.Now()
		if err := goBuild(ctx, filepath.Join(root, "tools", b.module), out, b.pkg, b.flags...); err != nil {
			return fmt.Errorf("build %s from the tools module (cd tools/%s && go build %s -o ../../%s/%s %s): %w",
				b.name, b.module, strings.Join(b.flags, " "), BinDir, b.name, b.pkg, err)
		}
		logf("built %s in %s", b.name, time.Since(start).Round(time.Second))
		return nil
	})
	return out, err
}

// buildOnce runs build unless built reports the binary out is there, holding a lock on out
// (an flock on out + ".lock") while it looks again and builds: tests starting in parallel, in
// this process or another, build a binary once, and the others wait for it rather than
// compile the same packages beside it.
func buildOnce(out string, built func() bool, build func() error) error {
	if built() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close() // closing the file releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if built() {
		return nil
	}
	return build()
}

// BuildHeadgate builds the headgate binary from the checkout into dir and returns its path, for
// a test that runs headgate without a Stack (each Stack builds its own).
func BuildHeadgate(ctx context.Context, dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "headgate")
	return out, buildHeadgate(ctx, root, out)
}

// buildHeadgate builds the headgate binary from the checkout, always, with flags (such as
// -tags tailnet) given to go build: the suite tests the code as it is now.
func buildHeadgate(ctx context.Context, root, out string, flags ...string) error {
	if err := goBuild(ctx, root, out, ".", flags...); err != nil {
		return fmt.Errorf("build headgate (go build %s-o headgate .): %w", strings.Join(append(flags, ""), " "), err)
	}
	return nil
}

// goBuild builds pkg in dir into out, with flags (such as -tags) given to go build. It writes
// to a temporary name of its own first, so that an interrupted build never leaves a truncated
// binary that a later run would take as built, and builds of the same binary at once (stacks
// starting in parallel) never share one.
func goBuild(ctx context.Context, dir, out, pkg string, flags ...string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	args := append(append([]string{"build", "-o", tmp}, flags...), pkg)
	if _, err := runCommand(ctx, dir, "go", args...); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
