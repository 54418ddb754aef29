package gateway

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestProxiedBodiesIntact sends bodies around the copy buffer's size through the proxy from
// many requests at once: buffers go back to the pool and are lent again, and no response may
// carry another's bytes or lose any.
func TestProxiedBodiesIntact(t *testing.T) {
	sizes := []int{0, 1, 200, copyBufferSize - 1, copyBufferSize, copyBufferSize + 1, 3*copyBufferSize + 17, 1<<20 + 5}
	body := func(size int) []byte {
		b := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(size), 7))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	bodies := map[string][]byte{"/": []byte("signed in")}
	for _, n := range sizes {
		bodies["/body/"+strconv.Itoa(n)] = body(n)
	}
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		// Without a length the body is streamed in chunks of whatever size the writes have.
		if r.URL.Query().Has("chunked") {
			for len(b) > 0 {
				n := min(len(b), 5000)
				w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	e := newTestEnv(t, func(o *envOptions) { o.upstream = upstream; o.memory = true })
	withAlice(e)
	_, c := e.signedIn(t)
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}}

	var wg sync.WaitGroup
	errs := make(chan error, 4*len(sizes)*2)
	for range 4 {
		for path, want := range bodies {
			for _, query := range []string{"", "?chunked"} {
				wg.Go(func() {
					resp := e.get(t, path+query, h)
					got := []byte(readBody(t, resp))
					if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
						errs <- fmt.Errorf("%s%s: got %d and %d bytes (equal: %v), want 200 and %d bytes",
							path, query, resp.StatusCode, len(got), bytes.Equal(got, want), len(want))
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestForwardedHeaders: X-Forwarded-For, -Proto and -Host reach the upstream as headgate saw
// the request, unless it came from one of trusted_proxies, whose view is kept.
func TestForwardedHeaders(t *testing.T) {
	sent := http.Header{
		"X-Forwarded-For":   {"203.0.113.9, 198.51.100.7"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"gate.example.com"},
		"Forwarded":         {"for=192.0.2.1;proto=https"},
		"X-Real-Ip":         {"192.0.2.66"},
		"True-Client-Ip":    {"192.0.2.67"},
		"Cf-Connecting-Ip":  {"192.0.2.68"},
		"X_Client_IP":       {"192.0.2.69"},
		"X-Forwarded-Port":  {"443"},
		"X-Forwarded-Ssl":   {"on"},
		"Front-End-Https":   {"on"},
	}
	// None of the client's other address and scheme headers may reach the upstream, whoever sent
	// them.
	absent := []string{"True-Client-Ip", "Cf-Connecting-Ip", "X_Client_IP", "X-Client-Ip", "X-Forwarded-Port",
		"X-Forwarded-Ssl", "Front-End-Https"}
	tests := []struct {
		name    string
		trusted []string
		header  http.Header
		want    http.Header // on the upstream; "" for absent
	}{
		{"no trusted proxies", nil, sent,
			http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"HOST"}, "Forwarded": {""},
				"X-Real-Ip": {"127.0.0.1"}}},
		{"from an address outside trusted_proxies", []string{"10.0.0.0/8", "192.168.1.10"}, sent,
			http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"HOST"}, "Forwarded": {""}}},
		{"from a trusted proxy (CIDR)", []string{"10.0.0.0/8", "127.0.0.0/8"}, sent,
			http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7, 127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"gate.example.com"}, "Forwarded": {""}}},
		{"from a trusted proxy (address)", []string{"127.0.0.1"}, sent,
			http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7, 127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"gate.example.com"},
				"X-Real-Ip": {"198.51.100.7"}}},
		{"a trusted proxy that sent nothing", []string{"127.0.0.1"}, http.Header{},
			http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"HOST"}, "X-Real-Ip": {"127.0.0.1"}}},
		{"a trusted proxy's odd scheme", []string{"127.0.0.1"}, http.Header{"X-Forwarded-Proto": {"javascript"}},
			http.Header{"X-Forwarded-Proto": {"http"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *envOptions) { o.trusted = tt.trusted; o.memory = true })
			withAlice(e)
			_, c := e.signedIn(t)
			h := tt.header.Clone()
			h.Set("Cookie", c.Name+"="+c.Value)
			if resp := e.get(t, "/", h); resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d, want 200", resp.StatusCode)
			}
			got := e.upstream.last().Header
			for _, name := range absent {
				if v, ok := got[http.CanonicalHeaderKey(name)]; ok {
					t.Errorf("%s: got %q, want none", name, v)
				}
				if v, ok := got[name]; ok {
					t.Errorf("%s: got %q, want none", name, v)
				}
			}
			for name, want := range tt.want {
				w := strings.ReplaceAll(want[0], "HOST", mustURL(t, e.srv.URL).Host)
				if g := strings.Join(got[name], ", "); g != w {
					t.Errorf("%s: got %q, want %q", name, g, w)
				}
			}
		})
	}
}

func TestCopyBuffers(t *testing.T) {
	var b copyBuffers
	buf := b.Get()
	if len(buf) != copyBufferSize {
		t.Fatalf("Get: got %d bytes, want %d", len(buf), copyBufferSize)
	}
	b.Put(buf)
	// A buffer that is not one of the pool's is left alone, never lent out.
	b.Put(make([]byte, 10))
	b.Put(make([]byte, copyBufferSize-1, copyBufferSize))
	for range 3 {
		if got := len(b.Get()); got != copyBufferSize {
			t.Fatalf("Get after foreign Puts: got %d bytes, want %d", got, copyBufferSize)
		}
	}
}

// TestH2CUpgradeNotPassedOn: a request that asks to switch to h2c reaches the upstream as plain
// HTTP/1.1, signed in or on a skip_auth path; a WebSocket upgrade still goes through.
func TestH2CUpgradeNotPassedOn(t *testing.T) {
	e := newTestEnv(t, func(o *envOptions) { o.memory = true })
	withAlice(e)
	_, c := e.signedIn(t)
	for _, path := range []string{"/app", "/admin/healthz"} {
		for _, upgrade := range []string{"h2c", "H2C", "websocket, h2c", " h2c "} {
			h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "Connection": {"Upgrade, HTTP2-Settings"},
				"Upgrade": {upgrade}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}}
			if resp := e.get(t, path, h); resp.StatusCode != http.StatusOK {
				t.Errorf("%s with Upgrade %q: got %d, want 200", path, upgrade, resp.StatusCode)
				continue
			}
			up := e.upstream.last()
			if v := up.Header.Values("Upgrade"); len(v) != 0 || up.Header.Get("Http2-Settings") != "" {
				t.Errorf("%s with Upgrade %q: the upstream got Upgrade %q, HTTP2-Settings %q", path, upgrade, v, up.Header.Get("Http2-Settings"))
			}
		}
	}
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	e.get(t, "/ws", h)
	if got := e.upstream.last().Header.Get("Upgrade"); got != "websocket" {
		t.Errorf("WebSocket upgrade: the upstream got Upgrade %q, want websocket", got)
	}
}
