package testbed

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseHeadscaleVersions(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr string
	}{
		{list: "", want: []string{DefaultHeadscaleVersion}},
		{list: " , ", want: []string{DefaultHeadscaleVersion}},
		{list: "all", want: []string{"0.26.1", "0.27.1", "0.28.0", "0.29.3"}},
		{list: "0.27.1,v0.26.1 0.27.1", want: []string{"0.27.1", "0.26.1"}},
		{list: "0.28.0,0.25.0", want: []string{"0.28.0"}, wantErr: "headscale 0.25.0: not a release the harness runs"},
		{list: "all,0.28.0", want: []string{"0.28.0"}, wantErr: "headscale all: not a release"},
	}
	for _, tt := range tests {
		got, err := ParseHeadscaleVersions(tt.list)
		if !slices.Equal(got, tt.want) {
			t.Errorf("ParseHeadscaleVersions(%q): got %q, want %q", tt.list, got, tt.want)
		}
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseHeadscaleVersions(%q): got error %v, want none", tt.list, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseHeadscaleVersions(%q): got error %v, want one containing %q", tt.list, err, tt.wantErr)
		}
	}
}

func TestHeadscaleAPIKeyFormats(t *testing.T) {
	before28, _ := findHeadscaleRelease("0.27.1")
	from28, _ := findHeadscaleRelease("0.28.0")
	tests := []struct {
		rel  headscaleRelease
		key  string
		want bool
	}{
		{before28, "AbC_d-1.Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE", true},
		{before28, "AbC_d-1.", false},
		{before28, "AbCd.secret", false},
		{before28, "Error: could not connect", false},
		{before28, "hskey-api-AbCdEf-secret", false},
		{from28, "hskey-api-AbCdEf-secret", true},
		{from28, "AbC_d-1.Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE", false},
	}
	for _, tt := range tests {
		if got := tt.rel.isAPIKey(tt.key); got != tt.want {
			t.Errorf("headscale %s: isAPIKey(%q): got %v, want %v", tt.rel.version, tt.key, got, tt.want)
		}
	}
}

// TestHeadscaleReleaseModules checks that each release's tools module pins that release.
func TestHeadscaleReleaseModules(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range headscaleReleases() {
		data, err := os.ReadFile(filepath.Join(root, "tools", r.module, "go.mod"))
		if err != nil {
			t.Errorf("headscale %s: %v", r.version, err)
			continue
		}
		mod := string(data)
		if want := "github.com/juanfont/headscale v" + r.version + " "; !strings.Contains(mod, want) {
			t.Errorf("headscale %s: tools/%s/go.mod does not require %q", r.version, r.module, strings.TrimSpace(want))
		}
		if !strings.Contains(mod, headscalePackage) {
			t.Errorf("headscale %s: tools/%s/go.mod does not name the tool %s", r.version, r.module, headscalePackage)
		}
	}
}
