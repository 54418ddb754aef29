package testbed

import (
	"os"
	"strings"
	"testing"
)

// TestHeadplaneBuildScript checks that `make headplane` (which reads the commit from the build
// script) and the harness name the same Headplane commit.
func TestHeadplaneBuildScript(t *testing.T) {
	data, err := os.ReadFile("headplane-build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if want := "\ncommit=" + headplaneCommit + "\n"; !strings.Contains(string(data), want) {
		t.Errorf("headplane-build.sh: got no line %q, want the harness's commit", strings.TrimSpace(want))
	}
}
