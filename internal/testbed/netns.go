package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// loopbackNamespaceEnv marks a test process that LoopbackNamespace started inside the
// namespace, so that it runs the test instead of starting it again.
const loopbackNamespaceEnv = "HEADGATE_LOOPBACK_NAMESPACE"

// tailnetEnv are Tailscale's environment knobs (read once, when a process starts) set for
// every process in the namespace: the test binary with its tsnet nodes, and any headgate it
// starts. They keep a node to the loopback DERP relay and off everything else:
//   - TS_DEBUG_NEVER_DIRECT_UDP: no disco ping to a peer's direct address, so no direct path is
//     ever set up and peers talk through DERP only;
//   - TS_DEBUG_OMIT_LOCAL_ADDRS: a node advertises none of its interface addresses as
//     endpoints (with STUN off in the DERP map, it then advertises none at all);
//   - TS_NO_LOGS_NO_SUPPORT: no log upload (a test binary never uploads anyway: tsnet starts
//     no log uploader when it runs under go test, and the upload transport does nothing);
//   - TS_DISABLE_PORTMAPPER: no UPnP, NAT-PMP or PCP probes of a router;
//   - TS_ASSUME_NETWORK_UP_FOR_TEST: a process that is not a test (headgate) does not wait
//     for a default route, which a namespace with loopback alone never has.
//
// TS_DEBUG_ALWAYS_USE_DERP, which replaces the UDP sockets with ones that never deliver, is
// not used: in tailscale.com v1.102.5 a rebind replaces such a socket without closing it, and
// tsnet's Close then waits forever for the reader of the first one.
var tailnetEnv = []string{
	"TS_DEBUG_NEVER_DIRECT_UDP=true",
	"TS_DEBUG_OMIT_LOCAL_ADDRS=true",
	"TS_NO_LOGS_NO_SUPPORT=true",
	"TS_DISABLE_PORTMAPPER=true",
	"TS_ASSUME_NETWORK_UP_FOR_TEST=true",
}

// LoopbackNamespace runs the test named test (testing.T's Name) inside a network namespace
// of its own that holds only a loopback interface, so that nothing it starts can send a packet
// off this machine.
//
// Outside the namespace it re-runs this test binary with -test.run selecting test alone,
// under `unshare --user --map-root-user --net` with loopback brought up before the binary
// starts (its TestMain may start servers), passing each line of the run's output to logf as
// it comes, and returns inside false: the caller's test has then been run, and the error says
// whether it passed. ctx bounds the run; its deadline becomes the run's -test.timeout. What
// must be built for the test should be built before, since the namespace has no network.
//
// Inside the namespace (the re-run) it checks that loopback is up and is the only interface,
// and returns inside true: the caller goes on with the test's body.
func LoopbackNamespace(ctx context.Context, test string, logf func(format string, args ...any)) (inside bool, err error) {
	if InLoopbackNamespace() {
		return true, checkLoopbackOnly()
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return false, errors.New("the tailnet tests run in a network namespace of their own and need util-linux's unshare " +
			"(apt-get install util-linux) and unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, errors.New("the tailnet tests bring loopback up in their network namespace with ip (apt-get install iproute2)")
	}
	exe, err := os.Executable()
	if err != nil {
		return false, fmt.Errorf("find the test binary: %w", err)
	}
	args := []string{"--user", "--map-root-user", "--net", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`,
		exe, "-test.run", runPattern(test), "-test.count=1", "-test.v"}
	if deadline, ok := ctx.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(deadline).Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(append(os.Environ(), loopbackNamespaceEnv+"=1"), tailnetEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s in a network namespace: %w", test, err)
	}
	tail := streamLines(out, logf)
	if err := cmd.Wait(); err != nil {
		return false, fmt.Errorf("%s in its network namespace: %w (its output is above)\n%s", test, err, tail)
	}
	return false, nil
}

// InLoopbackNamespace reports whether this process is a test that LoopbackNamespace re-ran in
// its network namespace.
func InLoopbackNamespace() bool { return os.Getenv(loopbackNamespaceEnv) != "" }

// runPattern is a -test.run pattern that selects the test (or subtest) named name alone.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// streamLines passes each line of r to logf until r ends, and returns the last lines that
// say FAIL or panic, for the error.
func streamLines(r io.Reader, logf func(string, ...any)) string {
	var fails []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		logf("netns: %s", line)
		if strings.Contains(line, "FAIL") || strings.HasPrefix(line, "panic:") {
			fails = append(fails, line)
		}
	}
	if len(fails) > 10 {
		fails = fails[len(fails)-10:]
	}
	return strings.Join(fails, "\n")
}

// checkLoopbackOnly checks that this process sees one network interface, loopback, and that
// it is up.
func checkLoopbackOnly() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list network interfaces: %w", err)
	}
	var names []string
	for _, ifc := range ifaces {
		names = append(names, ifc.Name)
	}
	if len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 || ifaces[0].Flags&net.FlagUp == 0 {
		return fmt.Errorf("in the network namespace: got interfaces %v, want loopback alone, up", names)
	}
	return nil
}
