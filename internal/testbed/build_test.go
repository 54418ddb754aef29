package testbed

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestRepoRoot checks that RepoRoot finds the checkout this package is in, whatever the working
// directory.
func TestRepoRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testbed", "build.go")); err != nil {
		t.Errorf("RepoRoot: got %s, want the checkout holding internal/testbed: %v", root, err)
	}
}

// TestBuildOnce: callers asking at once for a binary that is missing build it once; the
// others wait for that build and find the binary.
func TestBuildOnce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bin", "peer")
	built := func() bool {
		_, err := os.Stat(out)
		return err == nil
	}
	var builds atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	build := func() error {
		if builds.Add(1) == 1 {
			close(started)
			<-release
		}
		return os.WriteFile(out, []byte("binary"), 0o755)
	}
	errs := make(chan error, 4)
	go func() { errs <- buildOnce(out, built, build) }()
	<-started
	for range 3 {
		go func() { errs <- buildOnce(out, built, build) }()
	}
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
}
