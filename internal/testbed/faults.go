package testbed

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/redis/go-redis/v9"
)

// StopHeadscale stops Headscale, for tests of how headgate behaves without it. Its database,
// keys and configuration stay in Dir.
func (s *Stack) StopHeadscale() { s.stopPeer(&s.headscale) }

// StartHeadscale starts Headscale again after StopHeadscale, on the same ports and with the
// same database: its users and the API key headgate uses are back. Dex must be running, since
// Headscale checks its OIDC provider at start. It does nothing while Headscale runs.
func (s *Stack) StartHeadscale(ctx context.Context) error {
	return s.startPeer(&s.headscale, func() error { return s.runHeadscale(ctx) })
}

// StopDex stops Dex, for tests of how headgate behaves without its identity provider.
func (s *Stack) StopDex() { s.stopPeer(&s.dex) }

// StartDex starts Dex again after StopDex with the same configuration. Dex keeps everything in
// memory: it signs with new keys afterwards, and sign-ins in progress at Dex are forgotten. It
// does nothing while Dex runs.
func (s *Stack) StartDex(ctx context.Context) error {
	return s.startPeer(&s.dex, func() error { return s.runDex(ctx, filepath.Join(s.Dir, "dex.yaml")) })
}

// stopPeer stops the peer process held in *p.
func (s *Stack) stopPeer(p **process) {
	s.mu.Lock()
	proc := *p
	s.mu.Unlock()
	proc.stop()
}

// startPeer calls start, with s.mu held, unless the peer process held in *p is running.
func (s *Stack) startPeer(p **process, start func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *p != nil && !(*p).exited() {
		return nil
	}
	return start()
}

// RedisKeys returns the keys of the stack's Redis that match pattern (Redis's KEYS syntax,
// such as "headgate:session:*").
func (s *Stack) RedisKeys(ctx context.Context, pattern string) ([]string, error) {
	if s.RedisURL == "" {
		return nil, fmt.Errorf("list redis keys: the stack was started without redis")
	}
	opts, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("list redis keys: %w", err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	keys, err := client.Keys(ctx, pattern).Result()
	if err != nil {
		return nil, fmt.Errorf("list redis keys: %w", err)
	}
	return keys, nil
}
