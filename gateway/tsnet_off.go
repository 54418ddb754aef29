//go:build !tailnet

package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// tailnetBuilt reports whether this build has the tailnet listener (go build -tags tailnet).
const tailnetBuilt = false

// TailnetNode is headgate's node on the tailnet; this build has none.
type TailnetNode struct{}

// JoinTailnet fails: this build has no tailnet listener (Config.Validate says so first).
func JoinTailnet(context.Context, TailnetConfig, *slog.Logger) (*TailnetNode, error) {
	return nil, errors.New("join tailnet: this headgate was built without the tailnet listener (go build -tags tailnet)")
}

// Listener is never reached in this build.
func (n *TailnetNode) Listener() net.Listener { return nil }

// WhoIs is never reached in this build.
func (n *TailnetNode) WhoIs(context.Context, string) (Device, error) {
	return Device{}, ErrUnknownDevice
}

// Close is never reached in this build.
func (n *TailnetNode) Close() error { return nil }

// CheckTailnet finds nothing in this build: a tailnet section does not pass Config.Validate.
func CheckTailnet(context.Context, TailnetConfig, time.Duration) []Finding { return nil }
