package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startRedis starts the stack's own redis-server on its reserved port, without persistence, and
// waits until it answers PING.
func (s *Stack) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("start redis: redis-server is not installed (apt-get install redis-server): %w", err)
	}
	p, err := startProcess("redis", s.Dir, filepath.Join(s.Dir, "redis.log"), bin,
		"--port", strconv.Itoa(s.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.Dir)
	if err != nil {
		return err
	}
	s.redis = p
	ping := func(c net.Conn) error {
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("redis answered %q", strings.TrimSpace(line))
		}
		return nil
	}
	if err := p.waitTCP(ctx, hostPort(s.redisPort), 10*time.Second, ping); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	return nil
}

// StopRedis stops the stack's Redis, for tests of how headgate behaves without it. Its data is
// gone: it keeps nothing on disk.
func (s *Stack) StopRedis() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redis.stop()
}

// StartRedis starts the stack's Redis again on the same port, empty.
func (s *Stack) StartRedis(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.RedisURL == "" {
		return fmt.Errorf("start redis: the stack was started without redis")
	}
	if s.redis != nil && !s.redis.exited() {
		return nil
	}
	return s.startRedis(ctx)
}
