package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tsnet"
)

// ErrPeerNotFound is WhoIs's error for an address that belongs to no node the asking node
// knows (tsnet's local client's own sentinel).
var ErrPeerNotFound = local.ErrPeerNotFound

// nodeJoinTimeout bounds how long a node may take to join the tailnet: to register with the
// pre-auth key, get its netmap and address, and be running. It is generous because the
// machine is small and shared; a join normally takes a second or two.
const nodeJoinTimeout = 90 * time.Second

// PreAuthKeyOptions shape a pre-auth key.
type PreAuthKeyOptions struct {
	// Reusable lets any number of nodes join with the key. false: one node.
	Reusable bool
	// Tags ("tag:name") are given to the nodes that join with the key; the policy's
	// tagOwners must name the key's user for each. Tagged nodes belong to no user.
	Tags []string
}

// CreatePreAuthKey creates a Headscale pre-auth key for the user with id (HeadscaleUser.ID),
// usable for an hour, as an administrator does on the command line, and returns the key.
// Headscale 0.26 and later take the user's ID in --user (older releases took a name).
func (s *Stack) CreatePreAuthKey(ctx context.Context, userID string, opts PreAuthKeyOptions) (string, error) {
	args := []string{"preauthkeys", "create", "--user", userID, "--expiration", "1h"}
	if opts.Reusable {
		args = append(args, "--reusable")
	}
	if len(opts.Tags) > 0 {
		args = append(args, "--tags", strings.Join(opts.Tags, ","))
	}
	out, err := s.headscaleCLI(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("create headscale pre-auth key for user %s: %w", userID, err)
	}
	// The key is the last word printed; a release may warn before it.
	words := strings.Fields(string(out))
	if len(words) == 0 {
		return "", fmt.Errorf("create headscale pre-auth key for user %s: the command printed no key", userID)
	}
	return words[len(words)-1], nil
}

// HeadscaleNode is a node as `headscale nodes list -o json` lists it: the fields the tests use.
type HeadscaleNode struct {
	ID        uint64   `json:"id"`
	Name      string   `json:"name"`
	GivenName string   `json:"given_name"`
	IPs       []string `json:"ip_addresses"`
	Tags      []string `json:"tags"`
	User      *struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
}

// ListNodes lists every node Headscale knows, through its command line.
func (s *Stack) ListNodes(ctx context.Context) ([]HeadscaleNode, error) {
	out, err := s.headscaleCLI(ctx, "nodes", "list", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("list headscale nodes: %w", err)
	}
	var nodes []HeadscaleNode
	if err := json.Unmarshal(out, &nodes); err != nil {
		return nil, fmt.Errorf("list headscale nodes: decode %q: %w", out, err)
	}
	return nodes, nil
}

// FindNode returns the node Headscale knows with the Tailscale address ip.
func (s *Stack) FindNode(ctx context.Context, ip netip.Addr) (HeadscaleNode, error) {
	nodes, err := s.ListNodes(ctx)
	if err != nil {
		return HeadscaleNode{}, err
	}
	for _, n := range nodes {
		for _, a := range n.IPs {
			if a == ip.String() {
				return n, nil
			}
		}
	}
	return HeadscaleNode{}, fmt.Errorf("find headscale node %s: none of %d nodes has that address", ip, len(nodes))
}

// DeleteNode deletes the node with id from Headscale, as an administrator does on the command
// line. Headscale tells the other nodes in their next netmap.
func (s *Stack) DeleteNode(ctx context.Context, id uint64) error {
	if _, err := s.headscaleCLI(ctx, "nodes", "delete", "--identifier", strconv.FormatUint(id, 10), "--force"); err != nil {
		return fmt.Errorf("delete headscale node %d: %w", id, err)
	}
	return nil
}

// ExpireNode expires the key of the node with this ID in Headscale, as `headscale nodes
// expire` does.
func (s *Stack) ExpireNode(ctx context.Context, id uint64) error {
	if _, err := s.headscaleCLI(ctx, "nodes", "expire", "--identifier", strconv.FormatUint(id, 10)); err != nil {
		return fmt.Errorf("expire headscale node %d: %w", id, err)
	}
	return nil
}

// TailnetNodeOptions shape a TailnetNode.
type TailnetNodeOptions struct {
	// ControlURL is the control server's URL: a stack's HeadscaleURL.
	ControlURL string
	// AuthKey is the pre-auth key the node joins with.
	AuthKey string
	// Hostname is the name the node presents; Headscale names the node after it.
	Hostname string
	// Dir holds the node's state. It is created when missing.
	Dir string
	// Logf receives the node's log (verbose). nil: discarded.
	Logf func(format string, args ...any)
}

// TailnetNode is a Tailscale node in this process (tsnet), joined to a tailnet with a
// pre-auth key. Its connections are userspace: Listen and HTTPClient reach the tailnet, not
// the host's network.
type TailnetNode struct {
	// Hostname is the name the node presented.
	Hostname string
	// LogPath is the node's log file when a Stack started it; empty otherwise.
	LogPath string

	srv *tsnet.Server
	lc  *local.Client
	ip4 netip.Addr
}

// StartTailnetNode starts a node and waits (up to 90 seconds, ctx permitting) until it is
// running with its tailnet IPv4 address. A stack's nodes normally come from
// Stack.StartTailnetNode. On error the node is closed.
func StartTailnetNode(ctx context.Context, opts TailnetNodeOptions) (*TailnetNode, error) {
	if opts.ControlURL == "" || opts.AuthKey == "" || opts.Hostname == "" || opts.Dir == "" {
		return nil, errors.New("start tailnet node: ControlURL, AuthKey, Hostname and Dir are required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start tailnet node %s: %w", opts.Hostname, err)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	srv := &tsnet.Server{
		Dir:        opts.Dir,
		Hostname:   opts.Hostname,
		ControlURL: opts.ControlURL,
		AuthKey:    opts.AuthKey,
		Logf:       logf,
		UserLogf:   logf,
	}
	n := &TailnetNode{Hostname: opts.Hostname, srv: srv}
	if err := n.join(ctx); err != nil {
		srv.Close()
		return nil, fmt.Errorf("start tailnet node %s: %w", opts.Hostname, err)
	}
	return n, nil
}

// join starts the node and waits until it runs with an IPv4 address.
func (n *TailnetNode) join(ctx context.Context) error {
	upCtx, cancel := context.WithTimeout(ctx, nodeJoinTimeout)
	defer cancel()
	// Up follows the node's state on its IPN bus until it is running.
	if _, err := n.srv.Up(upCtx); err != nil {
		return fmt.Errorf("join the tailnet: %w", err)
	}
	lc, err := n.srv.LocalClient()
	if err != nil {
		return err
	}
	n.lc = lc
	return poll(ctx, nodeJoinTimeout, func() (bool, string) {
		n.ip4, _ = n.srv.TailscaleIPs()
		return n.ip4.IsValid(), "no IPv4 address yet"
	}, func(err error) error { return fmt.Errorf("wait for its tailnet IPv4 address: %w", err) })
}

// IPv4 is the node's tailnet IPv4 address (100.64.0.0/10).
func (n *TailnetNode) IPv4() netip.Addr { return n.ip4 }

// HTTPClient returns an HTTP client whose connections go through the tailnet from this node.
func (n *TailnetNode) HTTPClient() *http.Client { return n.srv.HTTPClient() }

// Listen listens on the node's tailnet addresses, such as Listen("tcp", ":80").
func (n *TailnetNode) Listen(network, addr string) (net.Listener, error) {
	return n.srv.Listen(network, addr)
}

// WhoIs asks the node who the tailnet peer at remoteAddr (ip or ip:port, such as a request's
// RemoteAddr) is: its node and the user owning it, from the node's current netmap. An
// address of no known peer gives ErrPeerNotFound.
func (n *TailnetNode) WhoIs(ctx context.Context, remoteAddr string) (*apitype.WhoIsResponse, error) {
	who, err := n.lc.WhoIs(ctx, remoteAddr)
	if err != nil {
		return nil, fmt.Errorf("whois %s at %s: %w", remoteAddr, n.Hostname, err)
	}
	return who, nil
}

// WaitPeer waits (up to 90 seconds, ctx permitting) until the node's netmap has a peer at ip,
// so that dialing ip can succeed.
func (n *TailnetNode) WaitPeer(ctx context.Context, ip netip.Addr) error {
	return poll(ctx, nodeJoinTimeout, func() (bool, string) {
		_, ok := n.peer(ctx, ip)
		return ok, "no such peer"
	}, func(err error) error { return fmt.Errorf("%s: wait for a peer at %s: %w", n.Hostname, ip, err) })
}

// Peer returns the node's status of its peer at ip.
func (n *TailnetNode) Peer(ctx context.Context, ip netip.Addr) (*ipnstate.PeerStatus, error) {
	ps, ok := n.peer(ctx, ip)
	if !ok {
		return nil, fmt.Errorf("%s has no peer at %s", n.Hostname, ip)
	}
	return ps, nil
}

func (n *TailnetNode) peer(ctx context.Context, ip netip.Addr) (*ipnstate.PeerStatus, bool) {
	st, err := n.lc.Status(ctx)
	if err != nil {
		return nil, false
	}
	for _, ps := range st.Peer {
		for _, a := range ps.TailscaleIPs {
			if a == ip {
				return ps, true
			}
		}
	}
	return nil, false
}

// Close leaves the tailnet and stops the node. It is safe to call more than once.
func (n *TailnetNode) Close() error { return n.srv.Close() }

// StartTailnetNode starts a node joined to the stack's Headscale with authKey, with its state
// under the stack's directory, and waits until it runs with its IPv4 address. Close stops it.
func (s *Stack) StartTailnetNode(ctx context.Context, hostname, authKey string) (*TailnetNode, error) {
	logf, logPath, err := s.tailnetLogf(hostname)
	if err != nil {
		return nil, err
	}
	n, err := StartTailnetNode(ctx, TailnetNodeOptions{
		ControlURL: s.HeadscaleURL,
		AuthKey:    authKey,
		Hostname:   hostname,
		Dir:        filepath.Join(s.Dir, "tailnet", hostname),
		Logf:       logf,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (its log: %s)", err, logPath)
	}
	n.LogPath = logPath
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return n, nil
}

// tailnetLogf returns a logger writing to the log file of the node named hostname in the
// stack's directory, tailnet/HOSTNAME.log; Close closes it.
func (s *Stack) tailnetLogf(hostname string) (logf func(string, ...any), path string, err error) {
	path = filepath.Join(s.Dir, "tailnet", hostname+".log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("open the log of tailnet node %s: %w", hostname, err)
	}
	s.mu.Lock()
	s.nodeLogs = append(s.nodeLogs, f)
	s.mu.Unlock()
	var mu sync.Mutex
	return func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(f, "%s %s\n", time.Now().Format("15:04:05.000"), strings.TrimSuffix(line, "\n"))
	}, path, nil
}

// ServeProxy serves an HTTP proxy on a loopback port that sends every request through the
// node, so that a browser on this machine browses as the node's device would (see
// StartBrowserVia). It returns the proxy's URL, and stop, which stops the proxy.
func (n *TailnetNode) ServeProxy() (proxyURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the proxy of tailnet node %s: %w", n.Hostname, err)
	}
	proxy := &httputil.ReverseProxy{
		// A proxy's request names its target whole: scheme, host and path.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport:     &http.Transport{DialContext: n.srv.Dial, ForceAttemptHTTP2: false},
		FlushInterval: -1,
	}
	// Only plain HTTP to a tailnet address is carried: a browser's own background requests
	// (updates, safe browsing) name public hosts, and are refused without a lookup.
	tailnetOnly := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.URL.Hostname()
		addr, err := netip.ParseAddr(host)
		if r.Method == http.MethodConnect || r.URL.Scheme != "http" || err != nil || !tailnetV4.Contains(addr) && !tailnetV6.Contains(addr) {
			http.Error(w, "this proxy carries plain HTTP to tailnet addresses only", http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: tailnetOnly, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}
