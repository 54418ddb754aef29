//go:build tailnet

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/logtail"
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
