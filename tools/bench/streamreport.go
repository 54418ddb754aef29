package main

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// printStreamResults prints, for each kind of stream, each target's median cost per stream
// and headgate's ratios to the floor round by round, then the sign-outs and the closes.
func printStreamResults(w io.Writer, st settings, targets []*streamTarget, results []streamResult) {
	fmt.Fprintf(w, "%d concurrent streams, one message a second each, of %d sessions; %d rounds, each stream held %s per measurement; medians over the rounds\n\n",
		st.streams, st.streamSessions, st.streamRounds, st.streamHold)
	rows := [][]string{{"stream", "target", "RSS per stream", "CPU per stream-second", "messages per stream-second", "RSS ratio", "CPU ratio"}}
	for _, kind := range []streamKind{kindEvents, kindSocket} {
		for _, t := range targets {
			var rss, cpu, rate, rssRatio, cpuRatio []float64
			for _, r := range results {
				if r.kind != kind || r.target != t {
					continue
				}
				rss = append(rss, r.rssPerStream())
				cpu = append(cpu, float64(r.cpuPerStreamSecond()))
				rate = append(rate, float64(r.messages)/(float64(r.streams)*r.hold.Seconds()))
				if t.name == floorName {
					continue
				}
				for _, f := range results {
					if f.kind == kind && f.round == r.round && f.target.name == floorName {
						rssRatio = append(rssRatio, r.rssPerStream()/f.rssPerStream())
						cpuRatio = append(cpuRatio, float64(r.cpuPerStreamSecond())/float64(f.cpuPerStreamSecond()))
					}
				}
			}
			row := []string{string(kind), t.name, fmt.Sprintf("%.1f KiB", median(rss)/1024),
				fmt.Sprintf("%.1f µs", median(cpu)/float64(time.Microsecond)), fmt.Sprintf("%.2f", median(rate)), "", ""}
			if len(rssRatio) > 0 {
				row[5], row[6] = fmtRatios(rssRatio), fmtRatios(cpuRatio)
			}
			rows = append(rows, row)
		}
	}
	printTable(w, rows)

	fmt.Fprintln(w)
	rows = [][]string{{"stream", "round", "sign-out ended its streams", "goroutines idle / open / closed", "streams after close", "RSS idle / open / closed", "stack / heap per stream"}}
	for _, r := range results {
		if r.target.metricsURL == "" {
			continue
		}
		rows = append(rows, []string{string(r.kind), strconv.Itoa(r.round),
			fmt.Sprintf("%d in %s", r.signedOut, fmtDuration(r.signOut)),
			fmt.Sprintf("%d / %d / %d", r.idleG, r.openG, r.closedG), strconv.Itoa(r.closedStreams),
			fmt.Sprintf("%s / %s / %s", mib(r.idleRSS), mib(r.openRSS), mib(r.closedRSS)),
			fmt.Sprintf("%.1f / %.1f KiB", float64(r.stack)/float64(r.streams)/1024, float64(r.heap)/float64(r.streams)/1024)})
	}
	printTable(w, rows)
	fmt.Fprintln(w, "\nheadgate, by round. Freed memory goes back to the system only as the Go runtime collects and scavenges it, so the RSS after the close stays high for a while.")
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
