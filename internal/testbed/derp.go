package testbed

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"

	"tailscale.com/derp/derpserver"
	"tailscale.com/types/key"
)

// derpRegionID is the one region of the DERP map a stack with Options.DERP gives Headscale.
const derpRegionID = 901

// DERPRegionCode is the code of that region, which a node's status of a peer names as the
// peer's relay (ipnstate.PeerStatus.Relay).
const DERPRegionCode = "loopback"

// DERPServer is Tailscale's DERP relay running in this process on a loopback TLS listener,
// the only relay a stack with Options.DERP tells its nodes about. Its certificate is
// httptest's own, which nodes accept because the region is marked InsecureForTests.
type DERPServer struct {
	// Port is the TLS port on 127.0.0.1.
	Port int

	derp *derpserver.Server
	http *httptest.Server
}

// StartDERP starts a DERP server on a free loopback port. logf receives its log; nil: none.
func StartDERP(logf func(format string, args ...any)) (*DERPServer, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start derp: %w", err)
	}
	d := derpserver.New(key.NewNode(), logf)
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Listener.Close()
	srv.Listener = ln
	// DERP upgrades an HTTP/1.1 connection; HTTP/2 would take it over.
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	srv.StartTLS()
	return &DERPServer{Port: ln.Addr().(*net.TCPAddr).Port, derp: d, http: srv}, nil
}

// headscaleMap is the DERP map Headscale reads from derp.paths: this server as the only
// region, without STUN, so that a node has no relay but this one and learns no public one.
// Headscale decodes the file into Tailscale's DERPMap with lower-cased field names.
func (d *DERPServer) headscaleMap() map[string]any {
	return map[string]any{"regions": map[int]any{
		derpRegionID: map[string]any{
			"regionid": derpRegionID, "regioncode": DERPRegionCode, "regionname": "Loopback",
			"nodes": []map[string]any{{
				"name": strconv.Itoa(derpRegionID) + "a", "regionid": derpRegionID,
				"hostname": "127.0.0.1", "ipv4": "127.0.0.1", "ipv6": "none",
				"stunport": -1, "derpport": d.Port, "insecurefortests": true,
			}},
		},
	}}
}

// DERPStats are the relay's counters since it started.
type DERPStats struct {
	// PacketsSent and BytesSent count what the relay delivered to its clients: disco pings
	// and WireGuard packets between nodes.
	PacketsSent, BytesSent int64
}

// Stats reads the relay's counters.
func (d *DERPServer) Stats() (DERPStats, error) {
	var m struct {
		PacketsSent int64 `json:"packets_sent"`
		BytesSent   int64 `json:"bytes_sent"`
	}
	if err := json.Unmarshal([]byte(d.derp.ExpVar(false).String()), &m); err != nil {
		return DERPStats{}, fmt.Errorf("read derp counters: %w", err)
	}
	return DERPStats{PacketsSent: m.PacketsSent, BytesSent: m.BytesSent}, nil
}

// Close stops the relay and drops its clients. It is safe to call on nil.
func (d *DERPServer) Close() {
	if d == nil {
		return
	}
	d.http.CloseClientConnections()
	d.http.Close()
	d.derp.Close()
}
