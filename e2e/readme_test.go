package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The README's recipes are what the tests run: they read them from README.md, read once.

var readme = sync.OnceValues(func() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "README.md"))
	return string(data), err
})

// readmeText returns README.md.
func readmeText(t *testing.T) string {
	t.Helper()
	text, err := readme()
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// readmeFence returns the body of the first fenced block of README.md in language lang whose
// body starts with first (any block of lang when first is empty).
func readmeFence(t *testing.T, lang, first string) string {
	t.Helper()
	open := "```" + lang + "\n" + first
	_, rest, ok := strings.Cut(readmeText(t), open)
	if !ok {
		t.Fatalf("README.md has no %s block starting with %q", lang, first)
	}
	block, _, _ := strings.Cut(rest, "```")
	return first + block
}

// readmeBlock returns the YAML block of README.md whose first line is marker, without it.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	return strings.TrimPrefix(readmeFence(t, "yaml", marker+"\n"), marker+"\n")
}
