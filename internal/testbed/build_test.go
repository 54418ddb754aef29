package testbed

import (
	"os"
	"path/filepath"
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
