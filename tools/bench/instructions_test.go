package main

import (
	"strings"
	"testing"
	"time"
)

// TestReadDumpTotal: the instruction total of a callgrind dump is its totals line, or its
// summary line when it has none; a dump with neither is an error.
func TestReadDumpTotal(t *testing.T) {
	for _, tc := range []struct {
		dump string
		want int64
	}{
		{"version: 1\nevents: Ir\nsummary: 1234\nfn=main\n5 10\ntotals: 2203211170\n", 2203211170},
		{"events: Ir\nsummary: 987\nfn=main\n5 10\n", 987},
	} {
		got, err := readDumpTotal(strings.NewReader(tc.dump))
		if err != nil || got != tc.want {
			t.Errorf("readDumpTotal(%q) = %d, %v; want %d", tc.dump, got, err, tc.want)
		}
	}
	for _, bad := range []string{"events: Ir\nfn=main\n", "totals: many\n"} {
		if got, err := readDumpTotal(strings.NewReader(bad)); err == nil {
			t.Errorf("readDumpTotal(%q) = %d, want an error", bad, got)
		}
	}
}

// TestPrintInstructions: each target's instructions per request, and its ratios to the tuned
// and the timed floor.
func TestPrintInstructions(t *testing.T) {
	floor := &target{name: floorName}
	timed := &target{name: timedFloorName}
	gw := &target{name: "headgate redis"}
	var b strings.Builder
	printInstructions(&b, 10*time.Second, []instructionCount{
		{target: gw, requests: 1000, instructions: 184_700_000},
		{target: floor, requests: 2000, instructions: 348_200_000},
		{target: timed, requests: 1000, instructions: 178_000_000},
	})
	out := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"| target | requests | instructions/req | vs floor | vs timed |",
		// 184700 / 174100 and / 178000.
		"| headgate redis | 1000 | 184700 | 1.061 | 1.038 |",
		"| tuned floor | 2000 | 174100 | 1.000 | 0.978 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
}
