package testbed

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

// startRedis starts the stack's own redis-server on its reserved port and waits until it
// answers PING. It keeps nothing on disk unless the stack was started with RedisPersistence.
func (s *Stack) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("start redis: redis-server is not installed (apt-get install redis-server): %w", err)
	}
	appendOnly := []string{"--appendonly", "no"}
	if s.redisPersist {
		appendOnly = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(s.redisPort), "--bind", "127.0.0.1", "--save", "",
		"--dir", s.Dir}, appendOnly...)
	p, err := startProcess("redis", s.Dir, filepath.Join(s.Dir, "redis.log"), bin, args...)
	if err != nil {
		return err
	}
	s.redis = p
	if err := p.waitTCP(ctx, HostPort(s.redisPort), 10*time.Second, pingRedis); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	return nil
}

// pingRedis sends PING on c, a new connection to a redis-server, and accepts only PONG.
func pingRedis(c net.Conn) error {
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

// StopRedis stops the stack's Redis, for tests of how headgate behaves without it. Its data is
// gone unless the stack was started with RedisPersistence.
func (s *Stack) StopRedis() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redis.stop()
}

// StartRedis starts the stack's Redis again on the same port: empty, or with the data it had
// when the stack was started with RedisPersistence.
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
