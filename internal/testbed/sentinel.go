package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of a Sentinel monitor the primary under.
const SentinelMaster = "headgate"

// The sentinels' timing: a primary silent for sentinelDownAfter is down, and a failover that
// stalls is tried again after twice sentinelFailoverTimeout. Redis's defaults (30 s and 3 min)
// would make a test wait minutes.
const (
	sentinelDownAfter       = time.Second
	sentinelFailoverTimeout = time.Second
)

// Sentinel is a Redis Sentinel deployment of its own: a primary, one replica of it and three
// sentinels that watch them and promote the replica when the primary dies. Each is a
// redis-server process on a free port of 127.0.0.1, with a directory of its own under the
// directory given to StartSentinel, holding its configuration and its log.
type Sentinel struct {
	// URL is headgate's redis.url for the deployment: the first sentinel, the master name and
	// the other sentinels.
	URL string

	mu        sync.Mutex                       // guards the maps
	servers   map[string]*process              // the primary and the replica, by address
	sentinels map[string]*process              // by address
	clients   map[string]*redis.Client         // one per server, by address
	watchers  map[string]*redis.SentinelClient // one per sentinel, by address
}

// StartSentinel starts a primary, its replica and three sentinels in directories under dir, and
// waits until the replica has copied the primary and every sentinel knows the replica and the
// two other sentinels, so that a failover can begin as soon as the primary is gone. On failure
// everything already started is stopped, and the error carries the tail of the failing log.
func StartSentinel(ctx context.Context, dir string) (sen *Sentinel, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("start sentinel: redis-server is not installed (apt-get install redis-server): %w", err)
	}
	ports, err := FreePorts(5)
	if err != nil {
		return nil, fmt.Errorf("start sentinel: %w", err)
	}
	sen = &Sentinel{
		servers:   make(map[string]*process),
		sentinels: make(map[string]*process),
		clients:   make(map[string]*redis.Client),
		watchers:  make(map[string]*redis.SentinelClient),
	}
	defer func() {
		if err != nil {
			sen.Close()
		}
	}()
	primary, replica := HostPort(ports[0]), HostPort(ports[1])
	if err := sen.startServer(ctx, bin, dir, "primary", ports[0]); err != nil {
		return nil, err
	}
	if err := sen.startServer(ctx, bin, dir, "replica", ports[1], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0])); err != nil {
		return nil, err
	}
	if err := sen.waitSynced(ctx, primary, replica, 10*time.Second); err != nil {
		return nil, fmt.Errorf("start sentinel: %w", err)
	}
	var addrs []string
	for i, port := range ports[2:] {
		if err := sen.startWatcher(ctx, bin, filepath.Join(dir, fmt.Sprintf("sentinel%d", i+1)), port, ports[0]); err != nil {
			return nil, err
		}
		addrs = append(addrs, HostPort(port))
	}
	// Sentinels learn of the replica from the primary and of each other through it, every few
	// seconds.
	for _, addr := range addrs {
		if err := sen.waitWatching(ctx, addr, 30*time.Second); err != nil {
			return nil, fmt.Errorf("start sentinel: %w", err)
		}
	}
	sen.URL = fmt.Sprintf("redis://%s/0?master_name=%s&addr=%s&addr=%s", addrs[0], SentinelMaster, addrs[1], addrs[2])
	return sen, nil
}

// startServer starts a redis-server named name (primary or replica) on port, keeping nothing
// on disk, and waits until it answers PING.
func (sen *Sentinel) startServer(ctx context.Context, bin, dir, name string, port int, args ...string) error {
	own := filepath.Join(dir, name)
	if err := os.MkdirAll(own, 0o755); err != nil {
		return fmt.Errorf("start redis %s: %w", name, err)
	}
	addr := HostPort(port)
	args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", own}, args...)
	p, err := startProcess("redis "+name, own, filepath.Join(own, "redis.log"), bin, args...)
	if err != nil {
		return err
	}
	sen.mu.Lock()
	sen.servers[addr] = p
	sen.clients[addr] = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	sen.mu.Unlock()
	if err := p.waitTCP(ctx, addr, 10*time.Second, pingRedis); err != nil {
		return fmt.Errorf("start redis %s: %w", name, err)
	}
	return nil
}

// startWatcher starts a sentinel on port in dir, watching the primary on primaryPort, and waits
// until it answers PING. A sentinel rewrites its configuration file, so the file is its own.
func (sen *Sentinel) startWatcher(ctx context.Context, bin, dir string, port, primaryPort int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("start sentinel: %w", err)
	}
	conf := fmt.Sprintf(`port %[1]d
bind 127.0.0.1
dir %[2]s
sentinel monitor %[3]s 127.0.0.1 %[4]d 2
sentinel down-after-milliseconds %[3]s %[5]d
sentinel failover-timeout %[3]s %[6]d
`, port, dir, SentinelMaster, primaryPort, sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("start sentinel: %w", err)
	}
	addr := HostPort(port)
	p, err := startProcess("sentinel "+addr, dir, filepath.Join(dir, "sentinel.log"), bin, path, "--sentinel")
	if err != nil {
		return err
	}
	sen.mu.Lock()
	sen.sentinels[addr] = p
	sen.watchers[addr] = redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	sen.mu.Unlock()
	if err := p.waitTCP(ctx, addr, 10*time.Second, pingRedis); err != nil {
		return fmt.Errorf("start sentinel: %w", err)
	}
	return nil
}

// waitWatching polls the sentinel at addr until it watches the primary with one replica and
// two other sentinels, none of them down.
func (sen *Sentinel) waitWatching(ctx context.Context, addr string, timeout time.Duration) error {
	sen.mu.Lock()
	w, p := sen.watchers[addr], sen.sentinels[addr]
	sen.mu.Unlock()
	return poll(ctx, timeout, func() (bool, string) {
		m, err := w.Master(ctx, SentinelMaster).Result()
		if err != nil {
			return false, err.Error()
		}
		ok := m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" && m["flags"] == "master"
		return ok, fmt.Sprintf("flags %s, %s replicas, %s other sentinels", m["flags"], m["num-slaves"], m["num-other-sentinels"])
	}, func(err error) error { return p.failure(fmt.Errorf("sentinel %s: %w", addr, err)) })
}

// waitSynced polls until the replica at replica has applied everything the primary at primary
// has written.
func (sen *Sentinel) waitSynced(ctx context.Context, primary, replica string, timeout time.Duration) error {
	sen.mu.Lock()
	pc, rc, p := sen.clients[primary], sen.clients[replica], sen.servers[replica]
	sen.mu.Unlock()
	if pc == nil || rc == nil {
		return fmt.Errorf("wait for replication: %s or %s is not a server of this deployment", primary, replica)
	}
	return poll(ctx, timeout, func() (bool, string) {
		pi, err := pc.Info(ctx, "replication").Result()
		if err != nil {
			return false, "primary: " + err.Error()
		}
		ri, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return false, "replica: " + err.Error()
		}
		want, got := infoField(pi, "master_repl_offset"), infoField(ri, "slave_repl_offset")
		link := infoField(ri, "master_link_status")
		return link == "up" && want != "" && got == want,
			fmt.Sprintf("link %s, replica at offset %s of %s", link, got, want)
	}, func(err error) error { return p.failure(fmt.Errorf("replica %s: %w", replica, err)) })
}

// Primary returns the address of the primary as the sentinels name it: the first answer of
// a sentinel that is running.
func (sen *Sentinel) Primary(ctx context.Context) (string, error) {
	sen.mu.Lock()
	defer sen.mu.Unlock()
	var errs []error
	for addr, w := range sen.watchers {
		if sen.sentinels[addr].exited() {
			continue
		}
		hp, err := w.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("sentinel %s: %w", addr, err))
			continue
		}
		if len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
	}
	return "", fmt.Errorf("ask the sentinels for the primary: %w", errors.Join(errs...))
}

// WaitReplicated waits until the replica has applied everything the current primary has
// written. Replication is asynchronous: a write the primary has answered but not yet sent on
// is lost with it, so a test that kills the primary calls this first when what it proves is
// what its client does, not what Redis may lose.
func (sen *Sentinel) WaitReplicated(ctx context.Context, timeout time.Duration) error {
	primary, err := sen.Primary(ctx)
	if err != nil {
		return err
	}
	replica := ""
	sen.mu.Lock()
	for addr, p := range sen.servers {
		if addr != primary && !p.exited() {
			replica = addr
		}
	}
	sen.mu.Unlock()
	return sen.waitSynced(ctx, primary, replica, timeout)
}

// KillPrimary kills the current primary with SIGKILL, as a crash or a lost machine would, and
// returns its address. It does not come back: the sentinels promote the replica.
func (sen *Sentinel) KillPrimary(ctx context.Context) (string, error) {
	primary, err := sen.Primary(ctx)
	if err != nil {
		return "", err
	}
	sen.mu.Lock()
	p := sen.servers[primary]
	sen.mu.Unlock()
	if p == nil {
		return "", fmt.Errorf("kill the primary: the sentinels name %s, not a server of this deployment", primary)
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return primary, nil
}

// Close stops every process of the deployment. It is safe to call more than once.
func (sen *Sentinel) Close() {
	sen.mu.Lock()
	defer sen.mu.Unlock()
	for _, c := range sen.clients {
		c.Close()
	}
	for _, w := range sen.watchers {
		w.Close()
	}
	for _, p := range sen.sentinels {
		p.stop()
	}
	for _, p := range sen.servers {
		p.stop()
	}
}

// poll calls check every 50 ms until it reports done, and otherwise answers fail of an error
// carrying the last state check described once timeout has passed or ctx has ended.
func poll(ctx context.Context, timeout time.Duration, check func() (bool, string), fail func(error) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, state := check()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("not ready within %s (last: %s)", timeout, state))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// infoField returns the value of key in the text of an INFO answer, or "".
func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}
