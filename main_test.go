package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a running headgate, which
// a test can wait on.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // receives after a write, unless the last one is still untaken
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{wrote: make(chan struct{}, 1)} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// waitFor waits, for at most limit, until cond holds for what was written, and reports
// whether it does.
func (b *lockedBuffer) waitFor(limit time.Duration, cond func(written string) bool) bool {
	deadline := time.After(limit)
	for !cond(b.String()) {
		select {
		case <-b.wrote:
		case <-deadline:
			return cond(b.String())
		}
	}
	return true
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestJSONLogStaysJSONWhileRedisIsDown runs headgate against a Redis that does not answer:
// go-redis's own complaints arrive in headgate's log, and every line of a json log is JSON.
func TestJSONLogStaysJSONWhileRedisIsDown(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:0
public_url: http://127.0.0.1:4180
upstream: http://127.0.0.1:3000
oidc: {issuer: http://127.0.0.1:5556/dex, client_id: headgate, client_secret: x}
headscale: {url: http://127.0.0.1:8080, api_key: k}
session: {secret: `+strings.Repeat("k", 32)+`}
redis: {url: "redis://127.0.0.1:1/0", timeout: 100ms}
log: {format: json}
shutdown_timeout: 1s
`)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := newLockedBuffer(), newLockedBuffer()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"headgate", "-config", path}, env(nil), stdout, stderr) }()
	// /ready asks Redis, which fails: go-redis logs the failed dial.
	var addr string
	stderr.waitFor(10*time.Second, func(log string) bool {
		var line struct{ Addr string }
		for l := range strings.SplitSeq(log, "\n") {
			if strings.Contains(l, `"msg":"headgate listening"`) && json.Unmarshal([]byte(l), &line) == nil {
				addr = line.Addr
			}
		}
		return addr != ""
	})
	if addr == "" {
		cancel()
		t.Fatalf("headgate did not start:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/ready with Redis down: got %d, want 503", resp.StatusCode)
	}
	stderr.waitFor(10*time.Second, func(log string) bool { return strings.Contains(log, `"msg":"redis client"`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	log := stderr.String()
	if !strings.Contains(log, `"msg":"redis client"`) {
		t.Errorf("no go-redis message in headgate's log within 10s:\n%s", log)
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}
