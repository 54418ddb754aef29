package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// inLoopbackNamespace runs the calling test inside a network namespace with loopback alone (see
// testbed.LoopbackNamespace). Outside it, it runs the test there, fails this test when that
// run failed, and returns false: the caller returns. Inside, it returns true.
func inLoopbackNamespace(t *testing.T) bool {
	t.Helper()
	ctx := t.Context()
	if deadline, ok := t.Deadline(); ok {
		// Leave the run time to fail by itself, with its goroutines dumped, before this one.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-30*time.Second))
		defer cancel()
	}
	inside, err := testbed.LoopbackNamespace(ctx, t.Name(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return inside
}

// joinTailnet joins a node named hostname to the tailnet with a new pre-auth key of the user
// userID, made with opts, and waits until the node sees peer.
func joinTailnet(t *testing.T, ctx context.Context, s *testbed.Stack, hostname, userID string, opts testbed.PreAuthKeyOptions, peer netip.Addr) *testbed.TailnetNode {
	t.Helper()
	key, err := s.CreatePreAuthKey(ctx, userID, opts)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.StartTailnetNode(ctx, hostname, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitPeer(ctx, peer); err != nil {
		t.Fatal(err)
	}
	return n
}

// tailnetIdentity is what the WhoIs server node answers: who its tailnet peer is.
type tailnetIdentity struct {
	RemoteAddr  string   `json:"remote_addr"`
	UserID      int64    `json:"user_id"`
	LoginName   string   `json:"login_name"`
	DisplayName string   `json:"display_name"`
	NodeID      int64    `json:"node_id"`
	NodeName    string   `json:"node_name"`
	Tags        []string `json:"tags"`
}

// whoisHandler answers every request with what n's WhoIs says about the caller.
func whoisHandler(n *testbed.TailnetNode) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := n.WhoIs(r.Context(), r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id := tailnetIdentity{
			RemoteAddr:  r.RemoteAddr,
			UserID:      int64(who.UserProfile.ID),
			LoginName:   who.UserProfile.LoginName,
			DisplayName: who.UserProfile.DisplayName,
			NodeID:      int64(who.Node.ID),
			NodeName:    who.Node.Name,
			Tags:        who.Node.Tags,
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(id)
	})
}

// askWhoIs requests the WhoIs server at server through client's tailnet connection and returns
// the identity it answered and the size of its body.
func askWhoIs(ctx context.Context, client, server *testbed.TailnetNode) (tailnetIdentity, int, error) {
	var id tailnetIdentity
	if err := client.WaitPeer(ctx, server.IPv4()); err != nil {
		return id, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+server.IPv4().String()+"/whoami", nil)
	if err != nil {
		return id, 0, err
	}
	resp, err := client.HTTPClient().Do(req)
	if err != nil {
		return id, 0, fmt.Errorf("%s asks %s: %w", client.Hostname, server.Hostname, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return id, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return id, 0, fmt.Errorf("%s asks %s: got %d, want 200: %s", client.Hostname, server.Hostname, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &id); err != nil {
		return id, 0, fmt.Errorf("decode %q: %w", body, err)
	}
	return id, len(body), nil
}

// TestTailnetHarness proves the tailnet harness with real parts and nothing of headgate: a
// real Headscale, two tsnet nodes joined with a pre-auth key of alice's, every packet between
// them relayed by the loopback DERP server, inside a network namespace with loopback alone.
// A server node answers HTTP with what WhoIs says about the caller, and a client node asks it.
func TestTailnetHarness(t *testing.T) {
	t.Parallel()
	if !inLoopbackNamespace(t) {
		return
	}
	s := ownStack(t, testbed.Options{DERP: true})
	ctx := withTimeout(t, 5*time.Minute)

	alice, err := s.CreateCLIUser(ctx, "alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// Every node may reach every other; alice may tag a node tag:server.
	policy := `{
		"tagOwners": {"tag:server": ["alice@"]},
		"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
	}`
	if err := s.SetPolicy(ctx, policy); err != nil {
		t.Fatal(err)
	}
	key, err := s.CreatePreAuthKey(ctx, alice.ID, testbed.PreAuthKeyOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	server, err := s.StartTailnetNode(ctx, "whois-server", key)
	if err != nil {
		t.Fatal(err)
	}
	serverJoin := time.Since(began)
	began = time.Now()
	client, err := s.StartTailnetNode(ctx, "alice-laptop", key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joined the tailnet: %s in %s, %s in %s (logs in %s)", server.Hostname, serverJoin.Round(time.Millisecond),
		client.Hostname, time.Since(began).Round(time.Millisecond), s.Dir)

	ln, err := server.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: whoisHandler(server)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	before, err := s.DERP.Stats()
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	id, size, err := askWhoIs(ctx, client, server)
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.DERP.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("whois over the tailnet in %s: %+v", time.Since(began).Round(time.Millisecond), id)

	wantID, err := strconv.ParseInt(alice.ID, 10, 64)
	if err != nil {
		t.Fatalf("alice's headscale id %q: %v", alice.ID, err)
	}
	if id.UserID != wantID {
		t.Errorf("whois user id: got %d, want %d (alice's, as headscale's api lists her)", id.UserID, wantID)
	}
	// Headscale's login name for a user is the email when set, else the name.
	if want := cmp.Or(alice.Email, alice.Name); id.LoginName != want {
		t.Errorf("whois login name: got %q, want %q", id.LoginName, want)
	}
	if !strings.HasPrefix(id.NodeName, client.Hostname) {
		t.Errorf("whois node name: got %q, want %s...", id.NodeName, client.Hostname)
	}
	if len(id.Tags) != 0 {
		t.Errorf("whois tags: got %v, want none", id.Tags)
	}
	if host, _, _ := strings.Cut(id.RemoteAddr, ":"); host != client.IPv4().String() {
		t.Errorf("the request came from %s, want %s (the client's tailnet address)", id.RemoteAddr, client.IPv4())
	}

	// The request and its answer went through the relay: it delivered packets, and more bytes
	// than the answer's body, while they were exchanged.
	t.Logf("derp relay during the request: %d packets, %d bytes delivered", after.PacketsSent-before.PacketsSent, after.BytesSent-before.BytesSent)
	if got := after.PacketsSent - before.PacketsSent; got < 2 {
		t.Errorf("derp packets relayed during the request: got %d, want at least 2", got)
	}
	if got := after.BytesSent - before.BytesSent; got < int64(size) {
		t.Errorf("derp bytes relayed during the request: got %d, want at least the answer's %d", got, size)
	}
	peer, err := client.Peer(ctx, server.IPv4())
	if err != nil {
		t.Fatal(err)
	}
	// The client knew no direct address of the server to try, and reached it through the relay.
	if peer.CurAddr != "" || len(peer.Addrs) != 0 || peer.Relay != testbed.DERPRegionCode {
		t.Errorf("path to %s: got direct address %q, endpoints %v, relay %q; want none, none, %s",
			server.Hostname, peer.CurAddr, peer.Addrs, peer.Relay, testbed.DERPRegionCode)
	}

	t.Run("tagged node has no user", func(t *testing.T) {
		tagged := joinTailnet(t, ctx, s, "tagged-box", alice.ID, testbed.PreAuthKeyOptions{Tags: []string{"tag:server"}}, server.IPv4())
		id, _, err := askWhoIs(ctx, tagged, server)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("whois of the tagged node: %+v", id)
		if !slices.Contains(id.Tags, "tag:server") {
			t.Errorf("whois tags: got %v, want tag:server", id.Tags)
		}
		if id.UserID == wantID || id.LoginName == cmp.Or(alice.Email, alice.Name) {
			t.Errorf("whois user of a tagged node: got %d %q, want not alice's (a tagged node belongs to no user)", id.UserID, id.LoginName)
		}
	})

	t.Run("deleted node is forgotten", func(t *testing.T) {
		node, err := s.FindNode(ctx, client.IPv4())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := server.WhoIs(ctx, id.RemoteAddr); err != nil {
			t.Fatalf("whois before the delete: %v", err)
		}
		if err := s.DeleteNode(ctx, node.ID); err != nil {
			t.Fatal(err)
		}
		took := eventually(t, "whois stops finding the deleted node", time.Minute, 20*time.Millisecond, func() (bool, string) {
			_, err := server.WhoIs(ctx, id.RemoteAddr)
			if errors.Is(err, testbed.ErrPeerNotFound) {
				return true, ""
			}
			return false, fmt.Sprint(err)
		})
		t.Logf("whois forgot the deleted node %d %s in %s", node.ID, client.Hostname, took.Round(time.Millisecond))
	})
}
