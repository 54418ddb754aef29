package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// profileTargets drives each target once more at the largest connection count while perf
// samples its process, and writes dir/NAME.perf.data and dir/NAME.txt, each function's share
// of the process's CPU time with everything it calls. perf profiles any process, so gateways
// without a pprof endpoint are profiled alike. The bare proxy is this program, whose symbols
// go run leaves out: build it with go build for a readable profile of it.
func profileTargets(ctx context.Context, st settings, wrk string, env *environment, logf func(string, ...any)) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("-perf: the perf command is not installed (apt-get install -y linux-perf)")
	}
	if err := os.MkdirAll(st.perfDir, 0o755); err != nil {
		return err
	}
	script := filepath.Join(env.dir, "bench.lua")
	conns := slices.Max(st.conns)
	for _, t := range env.targets {
		name := strings.ReplaceAll(t.name, " ", "-")
		data := filepath.Join(st.perfDir, name+".perf.data")
		// The target's binary may have been replaced on disk since it started (a concurrent
		// build of headgate renames a new one over it), and perf looks symbols up by the
		// path the process mapped, "PATH (deleted)" then. A copy of the running binary under
		// that path in a directory of its own (perf report --symfs) finds them.
		symfs := filepath.Join(st.perfDir, name+".symfs")
		mapped, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", t.pid))
		if err != nil {
			return fmt.Errorf("profile %s: %w", t.name, err)
		}
		for _, p := range []string{mapped, strings.TrimSuffix(mapped, " (deleted)")} {
			if err := copyFile(fmt.Sprintf("/proc/%d/exe", t.pid), filepath.Join(symfs, p)); err != nil {
				return fmt.Errorf("profile %s: copy its binary: %w", t.name, err)
			}
		}
		rec := exec.CommandContext(ctx, perf, "record", "-F", "999", "-g", "-p", fmt.Sprint(t.pid),
			"-o", data, "--", "sleep", fmt.Sprint(int(st.duration.Seconds())))
		var wg sync.WaitGroup
		var recErr error
		var recOut []byte
		wg.Go(func() { recOut, recErr = rec.CombinedOutput() })
		r, err := runWrk(ctx, wrk, script, st, t, conns, st.duration, env.upstream)
		wg.Wait()
		if err != nil {
			return fmt.Errorf("profile %s: %w", t.name, err)
		}
		if recErr != nil {
			return fmt.Errorf("profile %s: perf record: %w\n%s", t.name, recErr, recOut)
		}
		// Inclusive time (--children): what each function costs with everything it calls.
		report, err := exec.CommandContext(ctx, perf, "report", "-i", data, "--symfs", symfs, "--stdio", "--children",
			"--sort", "symbol", "-g", "none", "--percent-limit", "0.5").Output()
		if err != nil {
			return fmt.Errorf("profile %s: perf report: %w", t.name, err)
		}
		out := filepath.Join(st.perfDir, name+".txt")
		if err := os.WriteFile(out, report, 0o644); err != nil {
			return err
		}
		logf("profiled %s at %d connections (%.0f req/s): %s", t.name, conns, r.rps, out)
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}
