package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebsocketAccept(t *testing.T) {
	// RFC 6455, section 1.3.
	if got, want := websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestStreamRoundTrip: a stream of each kind opens with its first message, receives the next
// one an interval later, and its reader ends when the client closes it.
func TestStreamRoundTrip(t *testing.T) {
	for _, kind := range []streamKind{kindEvents, kindSocket} {
		t.Run(string(kind), func(t *testing.T) {
			srv := httptest.NewServer(streamUpstream(10 * time.Millisecond))
			defer srv.Close()
			c, err := openStream(context.Background(), strings.TrimPrefix(srv.URL, "http://"), kind, "a=b")
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.messages.Load() < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("messages: got %d within 5s, want 2", c.messages.Load())
				}
				time.Sleep(time.Millisecond)
			}
			closed := make(chan struct{})
			go func() { c.close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("the stream's reader did not end when the client closed it")
			}
		})
	}
}
