package main

import (
	"fmt"
	"io"
	"time"
)

// print writes the tables of the sessions benchmark.
func (b *sessionBench) print(w io.Writer, fill fillResult, gc time.Duration, re recheckResult, spread [2]spreadResult) {
	n := b.st.n
	fmt.Fprintf(w, "Sessions at scale: %d live sessions in Redis (written by Create, 64 at a time, in %s: %.0f/s; Redis used %d bytes per session), %d instances in this process, each with a Redis client and subscription of its own.\n\n",
		n, fill.took.Round(time.Millisecond), float64(n)/fill.took.Seconds(), fill.redisMemory, len(b.stores))
	fmt.Fprintf(w, "| instance | subscribed in | warm-up: %d checks, %d at a time | Redis commands | local view per session |\n", n, b.st.workers)
	fmt.Fprintln(w, "| -------: | ------------: | ---------: | -------------: | ----------: |")
	for i, s := range b.stores {
		fmt.Fprintf(w, "| %d | %s | %s (%.0f/s) | %d | %.0f bytes |\n", i, s.started.Round(time.Microsecond),
			s.warmed.Round(time.Millisecond), float64(n)/s.warmed.Seconds(), s.warmCommands, float64(s.viewBytes)/float64(n))
	}
	fmt.Fprintf(w, "\nA full garbage collection of this process, every view warm: %s (median of 5; the benchmark's own list of the IDs included).\n", gc.Round(time.Microsecond))
	fmt.Fprintf(w, "\nAfter Redis dropped every instance's subscription at once, each of %d sessions checked once on every instance, %d at a time per instance:\n\n", n, b.st.workers)
	fmt.Fprintln(w, "| checks | took | commands | round trips | commands/s | Redis CPU | EXISTS seen by Redis | check p50 | check p99 | resubscribed within |")
	fmt.Fprintln(w, "| -----: | ---: | -------: | ----------: | ---------: | --------: | -------------------: | --------: | --------: | ------------------: |")
	fmt.Fprintf(w, "| %d | %s | %d | %d | %.0f | %s (%.0f%% of a core, %.1f µs per command) | %d | %s | %s | %s |\n",
		re.checks, re.took.Round(time.Millisecond), re.commands, re.trips, float64(re.commands)/re.took.Seconds(),
		re.redisCPU, 100*re.redisCPU.Seconds()/re.took.Seconds(), float64(re.redisCPU.Microseconds())/float64(max(1, re.commands)),
		re.exists, re.p50.Round(time.Microsecond), re.p99.Round(time.Microsecond), re.resubscribed.Round(time.Microsecond))
	fmt.Fprintf(w, "\nSign-out on one instance until Check answers revoked on the other %d (%d sign-outs each, in alternating blocks of 50; under load, each instance is asked for %.0f checks/s, each followed by %s of computation):\n\n",
		len(b.stores)-1, b.st.revocations, b.st.load, b.st.work)
	fmt.Fprintln(w, "| instances | checks/s served | this process's CPU | every other instance p50 | p99 | max | each other instance p50 | p99 |")
	fmt.Fprintln(w, "| :-------- | --------------: | -----------------: | -----------------------: | --: | --: | ----------------------: | --: |")
	for i, r := range spread {
		name := "idle"
		if i > 0 {
			name = "under load"
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %s | %s | %s | %s | %s |\n", name, r.load, 100*r.cpu,
			pct(r.all, 50).Round(time.Microsecond), pct(r.all, 99).Round(time.Microsecond), r.all[len(r.all)-1].Round(time.Microsecond),
			pct(r.each, 50).Round(time.Microsecond), pct(r.each, 99).Round(time.Microsecond))
	}
}
