// Command demo runs headgate on 127.0.0.1 with the shipped gateway.yaml, against a real Dex and
// Headscale, with the in-process session store. Behind it, the real Headplane serves /admin/
// (when a Headplane build is found, see testbed.Stack.StartHeadplane) and an upstream that shows the
// headers it receives serves every other path. It creates the demo people's Headscale users,
// makes Bob Headplane's owner, prints where to sign in and as whom, and runs until interrupted.
//
//	go run ./internal/demo
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"headgate/internal/testbed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "demo: "+format+"\n", args...) }
	logf("starting Dex, Headscale, the upstream and headgate (the first run builds Dex and Headscale, which takes a few minutes)")
	began := time.Now()
	// The demo runs the shipped gateway.yaml as it is, on the ports it names.
	config, err := filepath.Abs("gateway.yaml")
	if err != nil {
		return err
	}
	if _, err := os.Stat(config); err != nil {
		return fmt.Errorf("run the demo from the repository root: %w", err)
	}
	s, err := testbed.Start(ctx, testbed.Options{Gateway: &testbed.GatewayOptions{ConfigFile: config}, ShippedPorts: true, Logf: logf})
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.CreateAccounts(ctx); err != nil {
		return err
	}
	hp, err := startHeadplane(ctx, s)
	if err != nil {
		logf("no Headplane (%v); the echo upstream serves /admin/ too", err)
	}
	logf("ready in %s", time.Since(began).Round(100*time.Millisecond))

	fmt.Fprintf(stdout, "\nheadgate is running at  %s/\n\n", s.Gateway.URL)
	if hp != nil {
		fmt.Fprintf(stdout, "Headplane:  %s/admin/   (Bob is its owner: the demo signed him in first)\n", s.Gateway.URL)
	}
	fmt.Fprintf(stdout, "Echo:       %s/echo     (any path outside /admin/: the headers headgate sets)\n\n", s.Gateway.URL)
	fmt.Fprintln(stdout, "Sign in with one of these Dex accounts:")
	w := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "  EMAIL\tPASSWORD\tWHAT HAPPENS")
	role := func(r string) string {
		if hp == nil {
			return ""
		}
		return "; in Headplane: " + r
	}
	for _, p := range []struct {
		u    testbed.User
		what string
	}{
		{testbed.Bob, "let in as Headscale user \"bob\" (a CLI user, linked by verified email)" + role("the owner")},
		{testbed.Alice, "let in as Headscale user \"alice\" (an OIDC user, linked by provider ID)" + role("a member")},
		{testbed.Dave, "let in as Headscale user \"dave\" (a CLI user, linked by verified email)" + role("a member")},
		{testbed.Carol, "refused: no Headscale user"},
		{testbed.Erin, "refused: her Headscale user has her email, but Dex does not vouch for it"},
	} {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", p.u.Email, p.u.Password, p.what)
	}
	w.Flush()
	fmt.Fprintf(stdout, "\nSign out at %s/oauth2/sign_out (or with Headplane's Logout). Forward auth: %s/oauth2/auth.\n", s.Gateway.URL, s.Gateway.URL)
	fmt.Fprintf(stdout, "Dex: %s   Headscale: %s   upstream: %s\n", s.Issuer, s.HeadscaleURL, s.Upstream.URL)
	if hp != nil {
		fmt.Fprintf(stdout, "Headplane itself: %s (its log: %s)\n", hp.URL, hp.LogPath)
	}
	fmt.Fprintf(stdout, "Configurations and logs: %s (removed on exit)\n\nPress Ctrl-C to stop.\n", s.Dir)

	<-ctx.Done()
	logf("stopping")
	return nil
}

// startHeadplane starts the real Headplane with the recipe of the README, routes the upstream's
// /admin/ to it, and signs Bob in once so that he is its owner (the first person Headplane
// sees).
func startHeadplane(ctx context.Context, s *testbed.Stack) (*testbed.Headplane, error) {
	hp, err := s.StartHeadplane(ctx, testbed.HeadplaneOptions{})
	if err != nil {
		return nil, err
	}
	if err := s.Upstream.Route("/admin", hp.URL); err != nil {
		return nil, err
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	page, err := testbed.BrowserLogin(ctx, jar, s.Gateway.URL+"/admin/", testbed.Bob.Email, testbed.Bob.Password)
	if err != nil {
		return nil, fmt.Errorf("sign Bob in to make him the owner: %w", err)
	}
	if page.Status != http.StatusOK {
		return nil, fmt.Errorf("sign Bob in to make him the owner: got %d at %s", page.Status, page.URL.Path)
	}
	return hp, nil
}
