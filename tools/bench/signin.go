package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"headgate/internal/testbed"
)

// signInResult is what n sign-ins through one gateway cost.
type signInResult struct {
	target  *target
	n       int
	elapsed time.Duration
	// cpu is the gateway's process CPU time over the sign-ins, idpCPU Dex's.
	cpu, idpCPU time.Duration
}

// timeSignIns signs the benchmark's person in n times through every gateway, four at a time,
// each in a fresh browser: the gateway's start, Dex's login form and password, the callback
// and the first proxied request, which must be the upstream's page. The person's Headscale
// link is cached by then (each gateway signed them in once at the start), as it is for anyone
// who signed in before. CPU is read from /proc for the gateway's process and for Dex's, so
// that the gateway's own cost per sign-in is apart from the identity provider's.
func timeSignIns(ctx context.Context, env *environment, n int, logf func(string, ...any)) ([]signInResult, error) {
	issuer, err := url.Parse(env.stack.Issuer)
	if err != nil {
		return nil, err
	}
	dexPID, err := listenerPID(issuer.Host)
	if err != nil {
		return nil, fmt.Errorf("find dex: %w", err)
	}
	var results []signInResult
	for _, t := range env.targets {
		if t.signIn == "" {
			continue
		}
		logf("%d sign-ins through %s", n, t.name)
		cpu0, err1 := cpuTime(t.pid)
		idp0, err2 := cpuTime(dexPID)
		began := time.Now()
		_, err := signInMany(ctx, n, func(ctx context.Context) (string, error) { return "", signInOnce(ctx, t) })
		elapsed := time.Since(began)
		cpu1, err3 := cpuTime(t.pid)
		idp1, err4 := cpuTime(dexPID)
		for _, e := range []error{err, err1, err2, err3, err4} {
			if e != nil {
				return nil, fmt.Errorf("%s: %w", t.name, e)
			}
		}
		results = append(results, signInResult{target: t, n: n, elapsed: elapsed, cpu: cpu1 - cpu0, idpCPU: idp1 - idp0})
	}
	return results, nil
}

func signInOnce(ctx context.Context, t *target) error {
	page, err := testbed.BrowserLogin(ctx, newJar(), t.signIn, testbed.Bob.Email, testbed.Bob.Password)
	if err != nil {
		return err
	}
	if page.Status != http.StatusOK || page.Body != upstreamBody {
		return fmt.Errorf("a sign-in ended with %d, not the upstream's page: %s", page.Status, strings.Join(page.Hops, " -> "))
	}
	return nil
}

func printSignIns(w io.Writer, results []signInResult) {
	fmt.Fprintf(w, "Sign-ins through each gateway, each in a fresh browser (start, Dex's password form, callback, first proxied "+
		"request), with the person's link cached. Sign-ins per second are end to end, Dex included; CPU per sign-in is the "+
		"gateway's process alone, and per CPU-second is what one core of the gateway alone could serve.\n\n")
	rows := [][]string{{"target", "sign-ins", "sign-ins/s", "CPU/sign-in", "sign-ins per CPU-second", "Dex CPU/sign-in"}}
	for _, r := range results {
		per := r.cpu / time.Duration(r.n)
		perSecond := "?"
		if r.cpu > 0 {
			perSecond = fmt.Sprintf("%.0f", float64(r.n)/r.cpu.Seconds())
		}
		rows = append(rows, []string{r.target.name, fmt.Sprint(r.n), fmt.Sprintf("%.1f", float64(r.n)/r.elapsed.Seconds()),
			fmt.Sprintf("%.2f ms", float64(per.Microseconds())/1000), perSecond,
			fmt.Sprintf("%.1f ms", float64((r.idpCPU/time.Duration(r.n)).Microseconds())/1000)})
	}
	printTable(w, rows)
}
