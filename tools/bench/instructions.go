package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"headgate/internal/testbed"
)

// Instructions per request are counted under valgrind's callgrind, which counts what a process
// executes in user space, however busy the machine is: the count moves by about 1% from one
// run to the next (the garbage collector's share varies), where CPU time moves by several
// percent on a shared machine.
// It leaves out the kernel's share and stalls on memory, so it complements CPU time rather
// than replacing it.
const (
	// instructionConns and instructionWarmup shape the load: callgrind slows a process some
	// fifty times, so a few connections keep it busy.
	instructionConns  = 4
	instructionWarmup = 5 * time.Second
	// instructionReady bounds a target's start under callgrind.
	instructionReady = 2 * time.Minute
)

// instructionCount is what one target executed over a measured run.
type instructionCount struct {
	target       *target
	requests     int64
	instructions int64
}

func (c instructionCount) perRequest() float64 {
	return float64(c.instructions) / float64(c.requests)
}

// countInstructions starts a second instance of each target it can run again with the same
// session, one at a time and each on a port of its own, under callgrind: the bare proxies,
// headgate with the configuration of "headgate redis" (whose session is in Redis, so the
// benchmark's cookie holds for the new process), and the tuned and the timed floor. Each is
// warmed up, its counts are zeroed, wrk drives it for st.instructions, and its instructions
// are divided by wrk's requests.
func countInstructions(ctx context.Context, st settings, wrk string, env *environment, logf func(string, ...any)) ([]instructionCount, error) {
	valgrind, err := exec.LookPath("valgrind")
	if err != nil {
		return nil, errors.New("-instructions: valgrind is not installed (apt-get install -y valgrind)")
	}
	control, err := exec.LookPath("callgrind_control")
	if err != nil {
		return nil, errors.New("-instructions: callgrind_control is not installed (it comes with valgrind)")
	}
	script := filepath.Join(env.stack.Dir, "bench.lua")
	var counts []instructionCount
	for _, t := range env.targets {
		if t.rerun == nil {
			continue
		}
		ports, err := testbed.FreePorts(1)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		bin, args, err := t.rerun(addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		name := strings.ReplaceAll(t.name, " ", "-")
		out := filepath.Join(env.stack.Dir, name+".callgrind")
		// Go's asynchronous preemption signal trips an assertion in callgrind (3.19); without it
		// goroutines are preempted at function calls only, which changes nothing here.
		cmd := append([]string{"GODEBUG=asyncpreemptoff=1", valgrind, "--tool=callgrind", "--callgrind-out-file=" + out, bin}, args...)
		logf("counting the instructions of %s under callgrind", t.name)
		readyCtx, cancel := context.WithTimeout(ctx, instructionReady)
		p, err := testbed.StartProcessWithin(readyCtx, t.name+" under callgrind", filepath.Join(env.stack.Dir, name+"-callgrind.log"),
			"http://"+addr+t.readyPath, instructionReady, "env", cmd...)
		cancel()
		if err != nil {
			return nil, err
		}
		c, err := measureInstructions(ctx, st, wrk, script, env, &target{name: t.name, url: "http://" + addr, cookie: t.cookie, pid: p.PID()},
			control, out, st.instructions)
		p.Stop()
		if err != nil {
			return nil, fmt.Errorf("%s under callgrind: %w", t.name, err)
		}
		c.target = t
		logf("%s: %d requests, %.0f instructions each", t.name, c.requests, c.perRequest())
		counts = append(counts, c)
	}
	return counts, nil
}

// measureInstructions warms t up, zeroes its counts, drives it for d and reads the count
// callgrind dumps.
func measureInstructions(ctx context.Context, st settings, wrk, script string, env *environment, t *target, control, out string, d time.Duration) (instructionCount, error) {
	st.threads = 1
	if _, err := runWrk(ctx, wrk, script, st, t, instructionConns, instructionWarmup, env.upstream); err != nil {
		return instructionCount{}, err
	}
	pid := strconv.Itoa(t.pid)
	if b, err := exec.CommandContext(ctx, control, "-z", pid).CombinedOutput(); err != nil {
		return instructionCount{}, fmt.Errorf("callgrind_control -z: %w: %s", err, b)
	}
	r, err := runWrk(ctx, wrk, script, st, t, instructionConns, d, env.upstream)
	if err != nil {
		return instructionCount{}, err
	}
	if r.errors > 0 {
		return instructionCount{}, fmt.Errorf("%d of %d requests failed", r.errors, r.requests)
	}
	if b, err := exec.CommandContext(ctx, control, "-d", pid).CombinedOutput(); err != nil {
		return instructionCount{}, fmt.Errorf("callgrind_control -d: %w: %s", err, b)
	}
	// The first dump on request is out.1.
	n, err := dumpTotal(out + ".1")
	if err != nil {
		return instructionCount{}, err
	}
	return instructionCount{requests: r.requests, instructions: n}, nil
}

// dumpTotal reads the instruction total of a callgrind dump: its "totals:" line, or its
// "summary:" line when it has none.
func dumpTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readDumpTotal(f)
}

func readDumpTotal(r io.Reader) (int64, error) {
	var total int64 = -1
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, key := range []string{"totals:", "summary:"} {
			v, ok := strings.CutPrefix(line, key)
			if !ok {
				continue
			}
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("callgrind dump: %q: %w", line, err)
			}
			if key == "totals:" || total < 0 {
				total = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if total < 0 {
		return 0, errors.New("callgrind dump: no totals or summary line")
	}
	return total, nil
}

// rerunHeadgate returns the rerun of a headgate target: its binary, with a copy of its
// configuration that listens on addr (and names it as the public URL).
func rerunHeadgate(pid int, configPath, dir string) func(addr string) (string, []string, error) {
	return func(addr string) (string, []string, error) {
		bin, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			return "", nil, err
		}
		bin = strings.TrimSuffix(bin, " (deleted)")
		data, err := os.ReadFile(configPath)
		if err != nil {
			return "", nil, err
		}
		var cfg map[string]any
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return "", nil, fmt.Errorf("read %s: %w", configPath, err)
		}
		cfg["listen"], cfg["public_url"] = addr, "http://"+addr
		if data, err = yaml.Marshal(cfg); err != nil {
			return "", nil, err
		}
		copyPath := filepath.Join(dir, "callgrind-"+filepath.Base(configPath))
		if err := os.WriteFile(copyPath, data, 0o600); err != nil {
			return "", nil, err
		}
		return bin, []string{"-config", copyPath}, nil
	}
}

// printInstructions prints the instructions per request of each target, and their ratios to
// the tuned and the timed floor.
func printInstructions(w io.Writer, d time.Duration, counts []instructionCount) {
	fmt.Fprintf(w, "User-space instructions per signed-in request under callgrind (%s at %d connections after a warm-up; "+
		"repeatable within about 1%%, but without the kernel's share or stalls on memory):\n\n", d, instructionConns)
	per := map[string]float64{}
	for _, c := range counts {
		per[c.target.name] = c.perRequest()
	}
	rows := [][]string{{"target", "requests", "instructions/req", "vs floor", "vs timed"}}
	for _, c := range counts {
		row := []string{c.target.name, fmt.Sprint(c.requests), fmt.Sprintf("%.0f", c.perRequest())}
		for _, base := range []string{floorName, timedFloorName} {
			if b, ok := per[base]; ok {
				row = append(row, fmt.Sprintf("%.3f", c.perRequest()/b))
			} else {
				row = append(row, "?")
			}
		}
		rows = append(rows, row)
	}
	printTable(w, rows)
}
