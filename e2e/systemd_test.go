package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// deploy/systemd: the unit, checked by systemd's own tools, and the environment file beside it,
// which must be all the shipped gateway.yaml needs.

// systemdAnalyze returns Debian's systemd-analyze, failing t, saying what to install, when it
// is missing.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: apt-get install systemd (.ci/run installs it)")
	}
	return bin
}

// The exposure `systemd-analyze security` rates the unit at, from 0 (locked down) to 10.
var exposureLine = regexp.MustCompile(`Overall exposure level for headgate\.service: ([0-9.]+)`)

// TestSystemdUnit checks deploy/systemd/headgate.service with systemd 252's tools, which need
// no running systemd: `systemd-analyze verify` has nothing to say about it (it only warns of an
// unknown or misspelled key, so any output fails the test), and `systemd-analyze security`
// rates its exposure at most 2.0 of 10 ("OK"). The unit's headgate is replaced by the suite's
// binary, which verify requires to exist; nothing else changes.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	sharedStack(t) // the headgate binary is built
	analyze := systemdAnalyze(t)
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "headgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/local/bin/headgate "
	if !bytes.Contains(unit, []byte(installed)) {
		t.Fatalf("headgate.service: no %q", installed)
	}
	binary, err := testbed.BuildHeadgate(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "headgate.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/headgate"), []byte(binary)), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.CommandContext(t.Context(), analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.CommandContext(t.Context(), analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure in\n%s", out)
	}
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security: exposure %.1f", exposure)
	if exposure > 2.0 {
		t.Errorf("systemd-analyze security: got exposure %.1f, want at most 2.0\n%s", exposure, out)
	}
	for _, key := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service", "EnvironmentFile=/etc/headgate/headgate.env"} {
		if !bytes.Contains(unit, []byte("\n"+key)) {
			t.Errorf("headgate.service: no %q line", strings.TrimSpace(key))
		}
	}
}

// TestSystemdEnvironment runs headgate as headgate.service does, on the shipped gateway.yaml
// with the variables of deploy/systemd/headgate.env and no others (but a free port in the
// HEADGATE_LISTEN the file leaves commented out): it must serve /ping, and exit 0 on SIGTERM
// within the unit's TimeoutStopSec.
func TestSystemdEnvironment(t *testing.T) {
	t.Parallel()
	sharedStack(t)
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := envFile(t, filepath.Join(root, "deploy", "systemd", "headgate.env"))
	for _, name := range []string{"OIDC_CLIENT_SECRET", "HEADSCALE_API_KEY", "HEADGATE_SESSION_SECRET"} {
		if !strings.Contains(strings.Join(env, "\n")+"\n", name+"=") {
			t.Errorf("headgate.env: no %s", name)
		}
	}
	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	h := startHeadgate(t, filepath.Join(root, "gateway.yaml"), append(env, "HEADGATE_LISTEN="+testbed.HostPort(ports[0])))
	h.waitPing(t, "http://"+testbed.HostPort(ports[0]))
	h.stop(t, 20*time.Second)
}

// headgateProcess is a headgate binary run by a test with an environment of the test's alone.
type headgateProcess struct {
	cmd    *exec.Cmd
	log    bytes.Buffer
	exited chan error // receives Wait's result once; whoever reads it puts it back
}

// startHeadgate runs the suite's headgate binary on config with exactly env; it is killed when
// t ends, and its log shown when t failed.
func startHeadgate(t *testing.T, config string, env []string) *headgateProcess {
	t.Helper()
	binary, err := testbed.BuildHeadgate(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &headgateProcess{exited: make(chan error, 1)}
	h.cmd = exec.Command(binary, "-config", config)
	h.cmd.Env = env
	h.cmd.Stdout, h.cmd.Stderr = &h.log, &h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.exited <- h.cmd.Wait() }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("headgate's log:\n%s", h.log.String())
		}
	})
	return h
}

// waitPing waits until headgate answers /ping at base, failing t when it exits first.
func (h *headgateProcess) waitPing(t *testing.T, base string) {
	t.Helper()
	eventually(t, "/ping", 15*time.Second, 100*time.Millisecond, func() (bool, string) {
		select {
		case err := <-h.exited:
			h.exited <- err
			t.Fatalf("headgate exited: %v", err)
		default:
		}
		status, body, err := get(t.Context(), base+"/ping")
		return err == nil && status == http.StatusOK, fmt.Sprintf("%d %q %v", status, body, err)
	})
}

// stop sends SIGTERM and checks that headgate exits 0 within grace.
func (h *headgateProcess) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("headgate exited before SIGTERM: %v", err)
	}
	select {
	case err := <-h.exited:
		h.exited <- err
		if err != nil {
			t.Errorf("headgate after SIGTERM: got %v, want exit status 0", err)
		}
	case <-time.After(grace):
		t.Errorf("headgate did not exit within %s of SIGTERM", grace)
	}
}

// envFile returns the NAME=value lines of a systemd EnvironmentFile, without comments.
func envFile(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			t.Fatalf("%s: %q is not NAME=value", path, line)
		}
		env = append(env, line)
	}
	return env
}
