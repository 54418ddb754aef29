package e2e

import (
	"bytes"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"headgate/internal/testbed"
)

// deploy/compose: compose.yaml read with a YAML decoder (Compose itself needs its images, which
// a machine without a container registry cannot pull), and the three configurations it
// mounts, each run or checked by its own program.

// composeFile is the part of the Compose specification compose.yaml may use: a key outside it
// (a misspelled one, say) fails the decoding.
type composeFile struct {
	Name     string
	Services map[string]composeService
	Volumes  map[string]any
}

type composeService struct {
	Image       string
	Build       *struct{ Context, Target string }
	Command     any
	Restart     string
	Ports       []string
	Environment map[string]string
	Volumes     []string
	NetworkMode string                                `yaml:"network_mode"`
	DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
	ReadOnly    bool                                  `yaml:"read_only"`
	CapDrop     []string                              `yaml:"cap_drop"`
	SecurityOpt []string                              `yaml:"security_opt"`
	Healthcheck *struct {
		Test              []string
		Interval, Timeout string
		StartPeriod       string `yaml:"start_period"`
		Retries           int
	}
}

// composeVar is a variable Compose takes from .env: ${NAME}, ${NAME:?message} or ${NAME:-x}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}`)

// readCompose decodes deploy/compose/compose.yaml strictly and returns it with its directory.
func readCompose(t *testing.T) (composeFile, string, []byte) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "compose")
	data, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c, dir, data
}

// TestComposeFile checks compose.yaml's structure: Headscale, headgate, Headplane and Redis,
// each on an image pinned to a version (or built from this checkout or a pinned commit) and
// with a health check; every file it mounts exists; secrets come from .env and env.example
// names each of them; headgate runs read-only without capabilities and its own health check,
// and Headplane shares headgate's network namespace, built at the commit the suite tests.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	c, dir, data := readCompose(t)
	if got, want := slices.Sorted(maps.Keys(c.Services)), []string{"headgate", "headplane", "headscale", "redis"}; !slices.Equal(got, want) {
		t.Errorf("services: got %q, want %q", got, want)
	}
	headplaneCommit := headplaneBuildCommit(t)
	for name, s := range c.Services {
		switch {
		case s.Build == nil && !pinnedImage(s.Image):
			t.Errorf("%s: image %q: want a version, not latest", name, s.Image)
		case s.Build != nil && s.Build.Context == "../..":
			if _, err := os.Stat(filepath.Join(dir, s.Build.Context, "Dockerfile")); err != nil {
				t.Errorf("%s: build context %s: %v", name, s.Build.Context, err)
			}
		case s.Build != nil && !strings.HasSuffix(s.Build.Context, ".git#"+headplaneCommit):
			t.Errorf("%s: build context %q: want a Git repository at commit %s", name, s.Build.Context, headplaneCommit)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("%s: healthcheck: got %+v, want a CMD test", name, s.Healthcheck)
		}
		if s.Restart == "" && name != "headplane" {
			t.Errorf("%s: no restart policy", name)
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: depends on %s, which is no service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("%s: mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: mounts volume %s, which compose.yaml does not declare", name, src)
			}
		}
		for key, value := range s.Environment {
			if !composeVar.MatchString(value) || !strings.HasPrefix(value, "${") {
				t.Errorf("%s: environment %s: got %q, want a ${VAR:?...} from .env", name, key, value)
			}
		}
	}

	g := c.Services["headgate"]
	if want := []string{"CMD", "/headgate", "healthcheck"}; g.Healthcheck == nil || !slices.Equal(g.Healthcheck.Test, want) {
		t.Errorf("headgate: healthcheck: got %+v, want %q", g.Healthcheck, want)
	}
	if !slices.Contains(g.Volumes, "./gateway.yaml:/etc/headgate/gateway.yaml:ro") {
		t.Errorf("headgate: volumes: got %q, want ./gateway.yaml mounted read-only at /etc/headgate/gateway.yaml", g.Volumes)
	}
	for _, key := range []string{"OIDC_CLIENT_SECRET", "HEADSCALE_API_KEY", "HEADGATE_SESSION_SECRET"} {
		if _, ok := g.Environment[key]; !ok {
			t.Errorf("headgate: environment: no %s", key)
		}
	}
	if !g.ReadOnly || !slices.Equal(g.CapDrop, []string{"ALL"}) || !slices.Contains(g.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("headgate: got read_only %v, cap_drop %q, security_opt %q; want true, [ALL], no-new-privileges", g.ReadOnly, g.CapDrop, g.SecurityOpt)
	}
	hp := c.Services["headplane"]
	if hp.NetworkMode != "service:headgate" {
		t.Errorf("headplane: network_mode: got %q, want service:headgate", hp.NetworkMode)
	}
	if hp.Build == nil || hp.Build.Target != "final" {
		t.Errorf("headplane: build: got %+v, want target final", hp.Build)
	}
	for _, key := range []string{"HEADPLANE_SERVER__COOKIE_SECRET", "HEADPLANE_HEADSCALE__API_KEY"} {
		if _, ok := hp.Environment[key]; !ok {
			t.Errorf("headplane: environment: no %s", key)
		}
	}

	used := map[string]bool{}
	for _, m := range composeVar.FindAllStringSubmatch(string(data), -1) {
		used[m[1]] = true
	}
	listed := map[string]bool{}
	for _, line := range envFile(t, filepath.Join(dir, "env.example")) {
		name, _, _ := strings.Cut(line, "=")
		listed[name] = true
	}
	if !reflect.DeepEqual(used, listed) {
		t.Errorf("variables: compose.yaml uses %v, env.example lists %v", slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(listed)))
	}
}

// TestComposeConfigs checks the files compose.yaml mounts: headgate's and Headplane's are the
// README's tested Headplane recipe (Headplane's secrets moved to the environment, Headscale at
// its compose address); headgate runs on its gateway.yaml with env.example's variables (its
// peers' addresses replaced by the stack's) and is ready; Headscale's own configtest accepts
// headscale.yaml (its directories replaced by the test's).
func TestComposeConfigs(t *testing.T) {
	t.Parallel()
	s := sharedStack(t)
	_, dir, _ := readCompose(t)
	gateway := readYAMLMap(t, filepath.Join(dir, "gateway.yaml"))
	recipe := map[string]any{}
	if err := yaml.Unmarshal([]byte(readmeBlock(t, "# gateway.yaml: the keys for Headplane")), &recipe); err != nil {
		t.Fatal(err)
	}
	for key, want := range recipe {
		if !reflect.DeepEqual(gateway[key], want) {
			t.Errorf("gateway.yaml %s: got %v, want the README's %v", key, gateway[key], want)
		}
	}
	headplane := readYAMLMap(t, filepath.Join(dir, "headplane.yaml"))
	want := map[string]any{}
	if err := yaml.Unmarshal([]byte(readmeBlock(t, "# Headplane's config.yaml: the keys for headgate")), &want); err != nil {
		t.Fatal(err)
	}
	delete(want["server"].(map[string]any), "cookie_secret")
	delete(want["headscale"].(map[string]any), "api_key")
	want["headscale"].(map[string]any)["url"] = "http://headscale:8080"
	if !reflect.DeepEqual(headplane, want) {
		t.Errorf("headplane.yaml: got %v, want the README's recipe %v", headplane, want)
	}

	tmp := t.TempDir()
	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer("0.0.0.0:4180", testbed.HostPort(ports[0]), "redis://redis:6379/0", s.RedisURL,
		"http://headscale:8080", s.HeadscaleURL).Replace(string(text))
	config := filepath.Join(tmp, "gateway.yaml")
	if err := os.WriteFile(config, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHeadgate(t, config, envFile(t, filepath.Join(dir, "env.example")))
	base := "http://" + testbed.HostPort(ports[0])
	h.waitPing(t, base)
	if status, body, err := get(t.Context(), base+"/ready"); err != nil || status != http.StatusOK {
		t.Errorf("/ready: got %d %q (%v), want 200", status, body, err)
	}
	h.stop(t, 20*time.Second)

	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := os.ReadFile(filepath.Join(dir, "headscale.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hsLocal := strings.NewReplacer("/var/lib/headscale", tmp, "/var/run/headscale", tmp).Replace(string(hs))
	if err := os.WriteFile(filepath.Join(tmp, "headscale.yaml"), []byte(hsLocal), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), filepath.Join(root, testbed.BinDir, "headscale"), "configtest", "-c", filepath.Join(tmp, "headscale.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("headscale configtest: %v\n%s", err, out)
	}
}

// readYAMLMap decodes the YAML file at path.
func readYAMLMap(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// pinnedImage reports whether image names a version: a tag other than latest, or a digest.
func pinnedImage(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	_, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	return ok && tag != "" && tag != "latest"
}

// headplaneBuildCommit returns the Headplane commit the suite runs, as the Makefile reads it.
func headplaneBuildCommit(t *testing.T) string {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "internal", "testbed", "headplane-build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if commit, ok := strings.CutPrefix(strings.TrimSpace(line), "commit="); ok {
			return commit
		}
	}
	t.Fatal("headplane-build.sh: no commit= line")
	return ""
}
