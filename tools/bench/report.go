package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// machine is what the numbers were measured on.
type machine struct {
	cpus                  int
	model, kernel, memory string
	goVersion, wrkVersion string
}

func describeMachine(ctx context.Context, wrk string) machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown", kernel: "unknown", memory: "unknown",
		goVersion: runtime.Version(), wrkVersion: "unknown"}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.model = v
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		fmt.Sscanf(v, "%d", &kb)
		m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	// wrk -v prints its version and usage, and exits 1.
	out, _ := exec.CommandContext(ctx, wrk, "-v").CombinedOutput()
	if f := strings.Fields(string(out)); len(f) >= 2 && f[0] == "wrk" {
		m.wrkVersion = f[1]
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (m machine) print(w io.Writer) {
	fmt.Fprintf(w, "Machine: %d CPUs, %s, %s RAM, Linux %s; %s; wrk %s\n",
		m.cpus, m.model, m.memory, m.kernel, m.goVersion, m.wrkVersion)
}

// printResults prints the summary table (each target and connection count, averaged over
// the rounds) and the table of every run.
func printResults(w io.Writer, st settings, targets []*target, results []runResult) {
	// Ratios are taken to the bare proxy and to the tuned and timed floors in the same round.
	bases := []*target{targets[0]}
	for _, name := range []string{floorName, timedFloorName} {
		if i := slices.IndexFunc(targets, func(t *target) bool { return t.name == name }); i >= 0 {
			bases = append(bases, targets[i])
		}
	}
	baseRun := map[*target]map[[2]int]runResult{} // by round and connections
	for _, b := range bases {
		baseRun[b] = map[[2]int]runResult{}
	}
	for _, r := range results {
		if runs, ok := baseRun[r.target]; ok {
			runs[[2]int{r.round, r.conns}] = r
		}
	}
	ratio := func(r runResult, base *target) (rps, p99 float64) {
		b := baseRun[base][[2]int{r.round, r.conns}]
		return r.rps / b.rps, float64(r.p99) / float64(b.p99)
	}

	fmt.Fprintf(w, "Signed-in GET / through each target: %d rounds of %s per target and connection count (wrk, %d threads), "+
		"the median over the rounds; ratios are to the bare proxy and to the tuned and timed floors in the same round (median, and range). "+
		"Errors are summed; CPU per request (user + system, over every round) and peak RSS are the target's process alone.\n\n",
		st.rounds, st.duration, st.threads)
	header := []string{"target", "conns", "req/s", "p50", "p99", "errors", "CPU/req", "peak RSS"}
	for _, b := range bases {
		header = append(header, "req/s vs "+shortName(b), "p99 vs "+shortName(b))
	}
	rows := [][]string{header}
	for _, conns := range st.conns {
		for _, t := range targets {
			var rps, p50, p99 []float64
			ratios := make([][2][]float64, len(bases)) // per base: req/s and p99 ratios
			var requests, errors int64
			var cpu time.Duration
			for _, r := range results {
				if r.target != t || r.conns != conns {
					continue
				}
				rps = append(rps, r.rps)
				p50 = append(p50, float64(r.p50))
				p99 = append(p99, float64(r.p99))
				requests += r.requests
				errors += r.errors
				cpu += r.cpu
				for i, b := range bases {
					a, c := ratio(r, b)
					ratios[i][0], ratios[i][1] = append(ratios[i][0], a), append(ratios[i][1], c)
				}
			}
			if len(rps) == 0 {
				continue
			}
			rss := "?"
			if b, err := peakRSS(t.pid); err == nil {
				rss = fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
			}
			cpuPerReq := "?"
			if requests > 0 {
				cpuPerReq = fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(requests))
			}
			row := []string{t.name, fmt.Sprint(conns), fmt.Sprintf("%.0f", median(rps)),
				fmtDuration(time.Duration(median(p50))), fmtDuration(time.Duration(median(p99))),
				fmt.Sprint(errors), cpuPerReq, rss}
			for i, b := range bases {
				if t == b {
					row = append(row, "1", "1")
				} else {
					row = append(row, fmtRatios(ratios[i][0]), fmtRatios(ratios[i][1]))
				}
			}
			rows = append(rows, row)
		}
	}
	printTable(w, rows)

	fmt.Fprintf(w, "\nEvery run, in the order it ran:\n\n")
	header = []string{"round", "conns", "target", "req/s", "p50", "p99", "errors"}
	for _, b := range bases {
		header = append(header, "req/s vs "+shortName(b), "p99 vs "+shortName(b))
	}
	rows = [][]string{header}
	for _, r := range results {
		row := []string{fmt.Sprint(r.round), fmt.Sprint(r.conns), r.target.name, fmt.Sprintf("%.0f", r.rps),
			fmtDuration(r.p50), fmtDuration(r.p99), fmt.Sprint(r.errors)}
		for _, b := range bases {
			a, c := ratio(r, b)
			row = append(row, fmt.Sprintf("%.2f", a), fmt.Sprintf("%.2f", c))
		}
		rows = append(rows, row)
	}
	printTable(w, rows)
}

// shortName is how a ratio column names its base: "bare" for the bare proxy, "floor" for the
// tuned floor, "timed" for the timed floor.
func shortName(t *target) string {
	switch t.name {
	case floorName:
		return "floor"
	case timedFloorName:
		return "timed"
	}
	return "bare"
}

func printRedisCounts(w io.Writer, counts []redisCount) {
	fmt.Fprintf(w, "Redis commands per authenticated request (INFO commandstats before and after, after a warm-up):\n\n")
	rows := [][]string{{"target", "requests", "commands", "per request", "Redis CPU/req", "by command"}}
	for _, c := range counts {
		rows = append(rows, []string{c.target.name, fmt.Sprint(c.requests), fmt.Sprint(c.total()),
			fmt.Sprintf("%.2f", float64(c.total())/float64(c.requests)),
			fmt.Sprintf("%.1f µs", float64(c.redisCPU.Microseconds())/float64(c.requests)), c.commandList()})
	}
	printTable(w, rows)
}

// fmtRatios is the median of rs, with their range when there are several.
func fmtRatios(rs []float64) string {
	if len(rs) == 1 {
		return fmt.Sprintf("%.2f", rs[0])
	}
	return fmt.Sprintf("%.2f (%.2f-%.2f)", median(rs), slices.Min(rs), slices.Max(rs))
}

// median is the middle value of xs, or the mean of the two middle ones.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.1f ms", ms)
}

// printTable prints rows as a Markdown table, padded so that it also reads well in a
// terminal: the target and by-command columns left-aligned, the numbers right-aligned.
func printTable(w io.Writer, rows [][]string) {
	left := make([]bool, len(rows[0]))
	for i, h := range rows[0] {
		left[i] = h == "target" || h == "stream" || h == "by command" || h == "full listing" || h == "?email= lookup"
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	pad := func(s string, i int) string {
		fill := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(s))
		if left[i] {
			return s + fill
		}
		return fill + s
	}
	line := func(row []string) {
		cells := make([]string, len(row))
		for i, cell := range row {
			cells[i] = pad(cell, i)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	line(rows[0])
	sep := make([]string, len(widths))
	for i, n := range widths {
		if left[i] {
			sep[i] = ":" + strings.Repeat("-", n-1)
		} else {
			sep[i] = strings.Repeat("-", n-1) + ":"
		}
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(sep, " | "))
	for _, row := range rows[1:] {
		line(row)
	}
}
