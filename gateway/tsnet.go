//go:build tailnet

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/logtail"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
)

// tailnetBuilt reports whether this build has the tailnet listener (go build -tags tailnet).
const tailnetBuilt = true

// TailnetNode is headgate's node on the tailnet, run in process by Tailscale's tsnet: a
// userspace WireGuard node with a network stack of its own, which needs no TUN device and no
// privileges.
type TailnetNode struct {
	srv *tsnet.Server
	lc  *local.Client
	ln  net.Listener
}

// JoinTailnet starts headgate's node and its listener. The node joins the control server in
// the background, so that a control server that is down delays the tailnet listener without
// stopping the public one; the join, and anything that later goes wrong with it, is logged.
//
// The node reports nothing anywhere but to the control server and the relays in the DERP map
// it hands out: Tailscale's log upload is turned off for the whole process before the node
// starts.
func JoinTailnet(ctx context.Context, cfg TailnetConfig, log *slog.Logger) (*TailnetNode, error) {
	logtail.Disable()
	envknob.SetNoLogsNoSupport()
	srv := &tsnet.Server{
		Dir:        cfg.StateDir,
		Hostname:   cfg.Hostname,
		ControlURL: cfg.ControlURL,
		AuthKey:    cfg.AuthKey,
		Ephemeral:  cfg.Ephemeral,
		UserLogf: func(format string, args ...any) {
			log.Info("tailnet: " + fmt.Sprintf(format, args...))
		},
		Logf: func(format string, args ...any) {
			if log.Enabled(ctx, slog.LevelDebug) {
				log.Debug("tailnet: " + fmt.Sprintf(format, args...))
			}
		},
	}
	fail := func(err error) (*TailnetNode, error) {
		srv.Close()
		return nil, fmt.Errorf("join tailnet at %s: %w", cfg.ControlURL, err)
	}
	if err := srv.Start(); err != nil {
		return fail(err)
	}
	ln, err := srv.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("tailnet.listen: %w", err))
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return fail(err)
	}
	go func() {
		// A node that cannot reach the control server, or whose key Headscale refused, waits
		// quietly: say so once, with what to look at.
		slow := time.AfterFunc(tailnetJoinWarning, func() {
			log.Warn("tailnet: not joined yet; check that tailnet.control_url is reachable from here and that tailnet.auth_key is valid (headscale preauthkeys list)",
				"control_url", cfg.ControlURL, "waited", tailnetJoinWarning.String())
		})
		defer slow.Stop()
		status, err := srv.Up(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("tailnet: node did not come up", "err", err)
		case err == nil:
			addrs := make([]string, 0, len(status.TailscaleIPs))
			for _, a := range status.TailscaleIPs {
				addrs = append(addrs, a.String())
			}
			log.Info("tailnet: joined", "hostname", cfg.Hostname, "addrs", addrs, "listen", cfg.Listen)
		}
	}()
	return &TailnetNode{srv: srv, lc: lc, ln: ln}, nil
}

// tailnetJoinWarning is how long the node may take to join before headgate warns.
const tailnetJoinWarning = 30 * time.Second

// Listener is the node's listener on tailnet.listen.
func (n *TailnetNode) Listener() net.Listener { return n.ln }

// WhoIs asks the node which device of the tailnet has the address remoteAddr, as the control
// server last described it. It answers from the node's own network map, without a network
// round trip.
func (n *TailnetNode) WhoIs(ctx context.Context, remoteAddr string) (Device, error) {
	res, err := n.lc.WhoIs(ctx, remoteAddr)
	switch {
	case errors.Is(err, local.ErrPeerNotFound):
		return Device{}, fmt.Errorf("tailnet whois %s: %w", remoteAddr, ErrUnknownDevice)
	case err != nil:
		return Device{}, fmt.Errorf("tailnet whois %s: %w", remoteAddr, err)
	case res.Node == nil:
		return Device{}, fmt.Errorf("tailnet whois %s: %w", remoteAddr, ErrUnknownDevice)
	}
	node := res.Node
	d := Device{
		NodeID:    strconv.FormatInt(int64(node.ID), 10),
		Name:      node.ComputedName,
		Tags:      node.Tags,
		KeyExpiry: node.KeyExpiry,
	}
	if d.Name == "" {
		d.Name = node.Name
	}
	if node.Expired && d.KeyExpiry.IsZero() {
		d.KeyExpiry = time.Unix(1, 0) // expired, at an unknown time
	}
	if !node.IsTagged() && res.UserProfile != nil && res.UserProfile.ID != 0 {
		d.UserID = strconv.FormatInt(int64(res.UserProfile.ID), 10)
	}
	return d, nil
}

// Close leaves the tailnet and closes the listener.
func (n *TailnetNode) Close() error { return n.srv.Close() }

// CheckTailnet is what headgate -check learns of the tailnet section: whether the control
// server answers a client of this build (its Noise key, as a joining node asks for it first),
// and whether the node can start: with its state from an earlier start, or with an auth key.
// timeout bounds the request.
func CheckTailnet(ctx context.Context, c TailnetConfig, timeout time.Duration) []Finding {
	if !c.Enabled() {
		return nil
	}
	var found []Finding
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimSuffix(c.ControlURL, "/") + "/key?v=" + strconv.Itoa(int(tailcfg.CurrentCapabilityVersion))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return []Finding{{CheckFail, "tailnet.control_url", err.Error()}}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		found = append(found, Finding{CheckFail, "tailnet.control_url", fmt.Sprintf("GET /key: %v", err)})
	} else {
		var key struct {
			PublicKey string `json:"publicKey"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode != http.StatusOK:
			found = append(found, Finding{CheckFail, "tailnet.control_url", fmt.Sprintf("GET /key: %s: %s", resp.Status, truncate(strings.TrimSpace(string(body)), 200))})
		case json.Unmarshal(body, &key) != nil || key.PublicKey == "":
			found = append(found, Finding{CheckFail, "tailnet.control_url", "GET /key: the answer names no control key: is this a Headscale URL?"})
		default:
			found = append(found, Finding{CheckOK, "tailnet.control_url", "the control server at " + c.ControlURL + " answered a client of this build"})
		}
	}
	state := filepath.Join(c.StateDir, "tailscaled.state")
	switch info, err := os.Stat(c.StateDir); {
	case err == nil && !info.IsDir():
		found = append(found, Finding{CheckFail, "tailnet.state_dir", c.StateDir + " is not a directory"})
	case fileExists(state):
		found = append(found, Finding{CheckOK, "tailnet.state_dir", "holds the node's state: it rejoins as the same node"})
	case c.AuthKey == "":
		found = append(found, Finding{CheckFail, "tailnet.auth_key", "required: " + c.StateDir + " holds no node state yet, so the node must join with a pre-auth key"})
	default:
		found = append(found, Finding{CheckOK, "tailnet.auth_key", "set: the first start joins with it (" + c.StateDir + " holds no node state yet)"})
	}
	return found
}

// fileExists reports whether path names a regular file.
func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}
