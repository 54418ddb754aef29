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

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a running headgate.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
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
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"headgate", "-config", path}, env(nil), &stdout, &stderr) }()
	// /ready asks Redis, which fails: go-redis logs the failed dial.
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		var line struct{ Addr string }
		for l := range strings.SplitSeq(stderr.String(), "\n") {
			if strings.Contains(l, `"msg":"headgate listening"`) && json.Unmarshal([]byte(l), &line) == nil {
				addr = line.Addr
			}
		}
	}
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
	for !strings.Contains(stderr.String(), `"msg":"redis client"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	log := stderr.String()
	if !strings.Contains(log, `"msg":"redis client"`) {
		t.Errorf("no go-redis message in headgate's log within 5s:\n%s", log)
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}
