package main

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v): got %v, want %v", tt.xs, got, tt.want)
		}
	}
}

func TestFmtRatios(t *testing.T) {
	tests := []struct {
		rs   []float64
		want string
	}{
		{[]float64{0.9}, "0.90"},
		{[]float64{0.8, 1.1, 0.9}, "0.90 (0.80-1.10)"},
	}
	for _, tt := range tests {
		if got := fmtRatios(tt.rs); got != tt.want {
			t.Errorf("fmtRatios(%v): got %q, want %q", tt.rs, got, tt.want)
		}
	}
}

func TestPrintTable(t *testing.T) {
	var b strings.Builder
	printTable(&b, [][]string{{"target", "req/s"}, {"bare proxy", "9000"}, {"headgate", "12"}})
	want := "| target     | req/s |\n" +
		"| :--------- | ----: |\n" +
		"| bare proxy |  9000 |\n" +
		"| headgate   |    12 |\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestListenerPID finds this test's own listener, the way the benchmark finds headgate's.
func TestListenerPID(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, err := listenerPID(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("got pid %d, want %d", pid, os.Getpid())
	}
}

func TestProcessStats(t *testing.T) {
	// Burn a little CPU so that the counters move past a clock tick.
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	after, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("cpu time: got %v after %v of work from %v, want more", after, 50*time.Millisecond, before)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<30 {
		t.Errorf("peak rss: got %d bytes, want between 1 MiB and 1 GiB", rss)
	}
}

// TestPrintResultsRatios: each target's throughput and p99 are given as ratios to the bare
// proxy and to the tuned and timed floors of the same round, as the median over the rounds and
// their range.
func TestPrintResultsRatios(t *testing.T) {
	bare := &target{name: "bare proxy", pid: -1}
	floor := &target{name: floorName, pid: -1}
	timed := &target{name: timedFloorName, pid: -1}
	gw := &target{name: "headgate memory", pid: -1}
	run := func(tg *target, round int, rps float64, p99 time.Duration) runResult {
		return runResult{target: tg, conns: 32, round: round, requests: 1000, rps: rps, p50: time.Millisecond, p99: p99}
	}
	results := []runResult{
		run(bare, 1, 1000, 10*time.Millisecond), run(floor, 1, 1100, 10*time.Millisecond), run(gw, 1, 1045, 9*time.Millisecond),
		run(bare, 2, 2000, 10*time.Millisecond), run(floor, 2, 2000, 8*time.Millisecond), run(gw, 2, 1800, 8*time.Millisecond),
		run(timed, 1, 950, 10*time.Millisecond), run(timed, 2, 1800, 10*time.Millisecond),
	}
	var b strings.Builder
	printResults(&b, settings{rounds: 2, duration: time.Second, threads: 2, conns: []int{32}}, []*target{bare, floor, timed, gw}, results)
	out := b.String()
	for _, want := range []string{
		"| req/s vs bare | p99 vs bare | req/s vs floor | p99 vs floor | req/s vs timed | p99 vs timed |",
		// headgate to bare: 1045/1000 and 1800/2000, p99 9/10 and 8/10; to the tuned floor:
		// 1045/1100 and 1800/2000, p99 9/10 and 8/8; to the timed floor: 1045/950 and
		// 1800/1800, p99 9/10 and 8/10.
		"| 0.97 (0.90-1.04) | 0.85 (0.80-0.90) | 0.93 (0.90-0.95) | 0.95 (0.90-1.00) | 1.05 (1.00-1.10) | 0.85 (0.80-0.90) |",
		"| 1 | 1 |",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}
