package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// The container image, built and run in podman. The Dockerfile's build stage starts from the
// golang image and downloads modules, which a machine without a container registry cannot do;
// so the test runs that stage's `go build` line itself, on the host, and builds the
// Dockerfile's last stage as written, with what it copies from the build stage taken from that
// build. Everything the image itself says (its files, ENV, USER, HEALTHCHECK, ENTRYPOINT and
// CMD) is what runs.

// buildStageFiles maps the paths the last stage copies from the build stage to where the test
// finds them; out is the directory the build stage's `go build -o /out/...` writes to.
func buildStageFiles(out string) map[string]string {
	return map[string]string{
		"/out/headgate": filepath.Join(out, "headgate"),
		// The golang image is Debian's: this is the file of Debian's ca-certificates.
		"/etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt",
	}
}

// dockerfileStages returns the instructions of each stage of the Dockerfile text, comments
// dropped and continued lines joined.
func dockerfileStages(text string) [][]string {
	var (
		stages  [][]string
		pending string
	)
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	return stages
}

// imageContext writes a build context into dir for the Dockerfile's last stage, building the
// binary with the build stage's own `go build` line, and returns the Containerfile's path.
func imageContext(t *testing.T, root, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := dockerfileStages(string(data))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: got %d stages, want a build stage and the image's", len(stages))
	}
	out := filepath.Join(dir, "build", "out")
	var built bool
	for _, ins := range stages[0] {
		if !strings.HasPrefix(ins, "RUN ") || !strings.Contains(ins, "go build") {
			continue
		}
		line := strings.ReplaceAll(strings.TrimPrefix(ins, "RUN "), "/out/", out+"/")
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Dir = root
		output, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("the build stage's %q: %v\n%s", line, err, output)
		}
		built = true
	}
	if !built {
		t.Fatal("Dockerfile: the build stage has no RUN ... go build line")
	}
	files := buildStageFiles(out)
	var lines []string
	for _, ins := range stages[len(stages)-1] {
		fields := strings.Fields(ins)
		switch {
		case fields[0] == "COPY" && len(fields) == 4 && fields[1] == "--from=build":
			src, ok := files[fields[2]]
			if !ok {
				t.Fatalf("Dockerfile: the image copies %s from the build stage; the test knows only %v", fields[2], files)
			}
			rel := filepath.Join("build", fields[2])
			if err := copyFile(src, filepath.Join(dir, rel)); err != nil {
				t.Fatal(err)
			}
			ins = fmt.Sprintf("COPY %s %s", rel, fields[3])
		case fields[0] == "COPY" && len(fields) == 3:
			if err := copyFile(filepath.Join(root, fields[1]), filepath.Join(dir, fields[1])); err != nil {
				t.Fatal(err)
			}
		case fields[0] == "COPY" || fields[0] == "ADD":
			t.Fatalf("Dockerfile: the test cannot build %q", ins)
		}
		lines = append(lines, ins)
	}
	containerfile := filepath.Join(dir, "Containerfile")
	if err := os.WriteFile(containerfile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return containerfile
}

// imageConfig is the part of `podman image inspect` the test reads.
type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		ExposedPorts map[string]struct{}
	}
	Healthcheck *struct{ Test []string }
}

// The three secrets the shipped gateway.yaml names, for a container that runs it.
var shippedSecrets = []string{
	"OIDC_CLIENT_SECRET=container-test-client-secret",
	"HEADSCALE_API_KEY=container-test-api-key",
	"HEADGATE_SESSION_SECRET=container-test-session-secret-of-more-than-32-bytes",
}

// TestContainerImage builds the image and runs it as an operator would, with nothing but the
// three secrets the shipped configuration names, on a read-only root file system without
// capabilities: it must answer /ping and /ready through a published port (so it listens on
// the container's interface, not its loopback), pass its own HEALTHCHECK (on an image with no
// shell), run as the non-root user 65532, and exit 0 on the SIGTERM of `podman stop`.
func TestContainerImage(t *testing.T) {
	t.Parallel()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pm := newPodman(t)
	contextDir := t.TempDir()
	containerfile := imageContext(t, root, contextDir)
	const image = "localhost/headgate:e2e"
	// The docker format: the OCI one has no place for a HEALTHCHECK.
	pm.must("build", "--format", "docker", "--network", "none", "--tag", image, "--file", containerfile, contextDir)

	var inspected []imageConfig
	if err := json.Unmarshal([]byte(pm.must("image", "inspect", image)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(inspected))
	}
	cfg := inspected[0].Config
	if cfg.User != "65532:65532" {
		t.Errorf("image user: got %q, want 65532:65532", cfg.User)
	}
	if !slices.Contains(cfg.Env, "HEADGATE_LISTEN=0.0.0.0:4180") {
		t.Errorf("image env: got %q, want HEADGATE_LISTEN=0.0.0.0:4180", cfg.Env)
	}
	if _, ok := cfg.ExposedPorts["4180/tcp"]; !ok {
		t.Errorf("exposed ports: got %v, want 4180/tcp", cfg.ExposedPorts)
	}
	if want := []string{"CMD", "/headgate", "healthcheck"}; inspected[0].Healthcheck == nil || !slices.Equal(inspected[0].Healthcheck.Test, want) {
		t.Errorf("healthcheck: got %+v, want %q", inspected[0].Healthcheck, want)
	}

	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	const name = "headgate-e2e"
	pm.removeAtEnd(name)
	args := []string{"run", "--detach", "--name", name,
		"--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges",
		// Below the machine's limits: a sandbox may refuse to set them even to their values.
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
		"--publish", fmt.Sprintf("127.0.0.1:%d:4180", ports[0])}
	for _, env := range shippedSecrets {
		args = append(args, "--env", env)
	}
	pm.must(append(args, image)...)

	base := "http://" + testbed.HostPort(ports[0])
	eventually(t, "/ping through the published port", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		status, body, err := get(t.Context(), base+"/ping")
		if err != nil {
			return false, err.Error() + " (does the image listen on the container's interface?)"
		}
		return status == http.StatusOK, fmt.Sprintf("%d %q", status, body)
	})
	if status, body, err := get(t.Context(), base+"/ready"); err != nil || status != http.StatusOK {
		t.Errorf("/ready: got %d %q (%v), want 200", status, body, err)
	}
	if out, err := pm.run(t.Context(), "healthcheck", "run", name); err != nil {
		t.Errorf("the image's HEALTHCHECK: %v (%s)", err, out)
	}

	if logs, err := pm.logs(t.Context(), name); err != nil {
		t.Error(err)
	} else if !strings.Contains(logs, "headgate listening") {
		t.Errorf("the container's log: got %q, want headgate listening", logs)
	}

	pid := pm.must("inspect", "--format", "{{.State.Pid}}", name)
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if key, ids, ok := strings.Cut(line, ":"); ok && (key == "Uid" || key == "Gid") {
			if got := strings.Fields(ids); !slices.Equal(got, []string{"65532", "65532", "65532", "65532"}) {
				t.Errorf("the process's %s: got %q, want 65532 throughout", key, got)
			}
		}
	}

	began := time.Now()
	pm.must("stop", "--time", "15", name)
	if code := pm.must("inspect", "--format", "{{.State.ExitCode}}", name); code != "0" {
		t.Errorf("exit code after podman stop: got %s, want 0", code)
	}
	t.Logf("stopped by SIGTERM in %s", time.Since(began).Round(time.Millisecond))
}

// get fetches url and returns its status and body.
func get(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body), err
}

// TestDockerBuildContext sends the checkout to podman as a build context, as `docker build .`
// does, so that .dockerignore is read by a container engine's own rules, and checks what
// arrives: under 2 MB whatever lies in the checkout (e2e/.bin holds hundreds of megabytes of
// peer binaries), no .git, and every file the build stage needs: go.mod, go.sum, the files the
// last stage copies and the Go files of every package of this module the binary imports.
func TestDockerBuildContext(t *testing.T) {
	t.Parallel()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pm := newPodman(t)
	dir := t.TempDir()
	containerfile := filepath.Join(dir, "Containerfile")
	if err := os.WriteFile(containerfile, []byte("FROM scratch\nCOPY . /context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pm.must("build", "--network", "none", "--tag", "localhost/context:e2e", "--file", containerfile, root)
	const name = "context-e2e"
	pm.removeAtEnd(name)
	pm.must("create", "--name", name, "localhost/context:e2e", "/none")
	archive := filepath.Join(dir, "context.tar")
	pm.must("export", "--output", archive, name)
	sent, size := contextFiles(t, archive)
	t.Logf("build context: %d files, %d bytes", len(sent), size)
	if size > 2<<20 {
		t.Errorf("build context: got %d bytes, want under 2 MiB", size)
	}
	for file := range sent {
		if top, _, _ := strings.Cut(file, "/"); top == ".git" || top == "e2e" {
			t.Errorf("build context: got %s, want no %s/", file, top)
		}
	}
	for _, file := range append([]string{"go.mod", "go.sum"}, buildImports(t, root)...) {
		if !sent[file] {
			t.Errorf("build context: %s missing; the build needs it", file)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := dockerfileStages(string(data))
	for _, ins := range stages[len(stages)-1] {
		if fields := strings.Fields(ins); fields[0] == "COPY" && len(fields) == 3 && !sent[fields[1]] {
			t.Errorf("build context: %s missing; the image copies it", fields[1])
		}
	}
}

// contextFiles reads the exported file system of a container made from `COPY . /context` and
// returns the files under /context (relative to it) and their total size.
func contextFiles(t *testing.T, archive string) (map[string]bool, int64) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]bool{}
	var size int64
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if err == io.EOF {
			return files, size
		}
		if err != nil {
			t.Fatal(err)
		}
		rel, ok := strings.CutPrefix(strings.TrimPrefix(h.Name, "/"), "context/")
		if !ok || h.Typeflag == tar.TypeDir {
			continue
		}
		files[rel] = true
		size += h.Size
	}
}

// buildImports returns the source files, relative to root, of every package of the headgate
// module that the binary is built from.
func buildImports(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var files []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var pkg struct {
			Dir                 string
			Module              *struct{ Path string }
			GoFiles, EmbedFiles []string
		}
		if err := dec.Decode(&pkg); err != nil {
			t.Fatalf("go list -deps: %v", err)
		}
		if pkg.Module == nil || pkg.Module.Path != "headgate" {
			continue
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range append(pkg.GoFiles, pkg.EmbedFiles...) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if len(files) == 0 {
		t.Fatal("go list -deps: no package of module headgate")
	}
	return files
}
