package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedisCluster starts a Redis Cluster of three primaries, each a redis-server process of
// the test's own on a free port, and returns their addresses once the cluster answers.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test needs redis-server (apt-get install -y redis-server): %v", err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	var addrs []string
	var nodes []*redis.Client
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i),
			"--save", "", "--appendonly", "no")
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		node := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { node.Close() })
		waitFor(t, 5*time.Second, "redis-server on "+addr, func() bool { return node.Ping(ctx).Err() == nil })
		addrs, nodes = append(addrs, addr), append(nodes, node)
	}
	// Each primary serves a third of the slots; the first introduces itself to the others.
	const slots = 16384
	for i, node := range nodes {
		first, last := i*slots/len(nodes), (i+1)*slots/len(nodes)-1
		if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err(); err != nil {
			t.Fatalf("assign slots %d-%d: %v", first, last, err)
		}
	}
	for _, addr := range addrs[1:] {
		host, port, _ := net.SplitHostPort(addr)
		if err := nodes[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("cluster meet %s: %v", addr, err)
		}
	}
	waitFor(t, 15*time.Second, "the cluster", func() bool {
		for _, node := range nodes {
			info, err := node.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return false
			}
		}
		return true
	})
	return addrs
}

// TestRedisStoreOnCluster runs the store against a real Redis Cluster: records, their provider
// indexes and the revocation channel live on different nodes, and two instances share them.
func TestRedisStoreOnCluster(t *testing.T) {
	addrs := startRedisCluster(t)
	newClient := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { c.Close() })
		return c
	}
	const prefix = "headgate:"
	a, b := subscribedStore(t, newClient(), prefix, DefaultTiming()), subscribedStore(t, newClient(), prefix, DefaultTiming())
	ctx := context.Background()

	// Enough sessions that their keys fall on every node.
	var sessions []*Session
	for i := range 12 {
		s := newSession(time.Hour)
		s.Issuer, s.Subject, s.ProviderSession = "https://idp.example.com", fmt.Sprintf("person-%d", i%3), fmt.Sprintf("sid-%d", i)
		shareSession(t, a, b, s)
		sessions = append(sessions, s)
	}

	if err := a.Revoke(ctx, sessions[0]); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "a sign-out on A reaching B through the cluster", func() bool {
		return errors.Is(b.Check(ctx, sessions[0]), ErrRevoked)
	})
	t.Logf("sign-out reached the other instance in %v", took)

	// person-1 has sessions 1, 4, 7 and 10; the logout arrives at B, the sessions were made on A.
	if n, err := b.RevokeProviderSessions(ctx, "https://idp.example.com", "person-1", ""); err != nil || n != 4 {
		t.Fatalf("provider logout of person-1: got %d, %v, want 4, nil", n, err)
	}
	waitFor(t, 10*time.Second, "the provider logout reaching A", func() bool {
		for i, s := range sessions {
			err := a.Check(ctx, s)
			if revoked := i == 0 || i%3 == 1; revoked != errors.Is(err, ErrRevoked) {
				return false
			}
		}
		return true
	})

	if first, err := a.Claim(ctx, "state:x", time.Minute); err != nil || !first {
		t.Errorf("claim on the cluster: got %v, %v, want true, nil", first, err)
	}
	if first, err := b.Claim(ctx, "state:x", time.Minute); err != nil || first {
		t.Errorf("the same claim on the other instance: got %v, %v, want false, nil", first, err)
	}
}
