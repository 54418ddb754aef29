package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// The second round of hostile requests, against the headgate binary as it runs in production
// (its own http.Server settings included).

// rawExchange sends request as written to g and returns the status of the answer and, when
// waitClose is set, whether the connection ended after it, within bound.
func rawExchange(g *testbed.Gateway, request string, bound time.Duration, waitClose bool) (status int, closed bool, err error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(bound))
	if _, err := conn.Write([]byte(request)); err != nil {
		return 0, false, err
	}
	br := bufio.NewReader(conn)
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return 0, false, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !waitClose {
		return resp.StatusCode, false, nil
	}
	_, err = br.ReadByte()
	return resp.StatusCode, err == io.EOF, nil
}

// TestSlowBodiesWithoutSessionRefusedAtOnce: many clients declaring bodies they send slowly, or
// never, are each answered 401 at once and their connections closed; none reaches the upstream.
func TestSlowBodiesWithoutSessionRefusedAtOnce(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	const clients = 100
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for i := range clients {
		wg.Go(func() {
			head := fmt.Sprintf("POST /slow-bodies/%d HTTP/1.1\r\nHost: gate\r\nContent-Length: %d\r\n\r\nfirst bytes", i, 1000+i*997)
			if i%2 == 1 {
				head = fmt.Sprintf("PUT /slow-bodies/%d HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", i)
			}
			status, closed, err := rawExchange(g, head, 15*time.Second, true)
			if err != nil || status != http.StatusUnauthorized || !closed {
				errs <- fmt.Sprintf("client %d: status %d, closed %v, %v", i, status, closed, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	checkNoneReached(t, "/slow-bodies/")
}

// TestHostileRoundTwoAgainstTheBinary: skip_auth path tricks, h2c upgrades and made-up client
// addresses, against the binary.
func TestHostileRoundTwoAgainstTheBinary(t *testing.T) {
	t.Parallel()
	g := startGateway(t, sharedStack(t), testbed.GatewayOptions{SkipAuth: []string{"/round2/assets/", "/round2/healthz"}})

	for _, target := range []string{
		"/round2/assets/..;/round2/private", "/round2/assets/%2e%2e/round2/private",
		"/round2/assets/%252e%252e/round2/private", "/round2/assets/%5C..%5Cround2%5Cprivate",
		"/round2/assets/%C0%AE%C0%AE/round2/private", "/round2/healthz;/../private", "/round2/assets/x;jsessionid=1",
	} {
		status, _, err := rawExchange(g, "GET "+target+" HTTP/1.1\r\nHost: gate\r\n\r\n", 15*time.Second, false)
		if err != nil || status == http.StatusOK {
			t.Errorf("GET %s without a session: got %d (%v), want it refused", target, status, err)
		}
	}
	for _, method := range []string{"CONNECT", "TRACE", "PROPFIND"} {
		status, _, err := rawExchange(g, method+" /round2/assets/x HTTP/1.1\r\nHost: gate\r\n\r\n", 15*time.Second, false)
		if err != nil || status == http.StatusOK {
			t.Errorf("%s /round2/assets/x without a session: got %d (%v), want it refused", method, status, err)
		}
	}
	checkNoneReached(t, "/round2/private")
	if got := upstreamSaw("/round2/assets/x"); len(got) != 0 {
		t.Errorf("the upstream received %d requests for /round2/assets/x, want none", len(got))
	}
	if page := fetch(t, g, nil, http.MethodGet, "/round2/assets/app.js", nil); page.Status != http.StatusOK {
		t.Errorf("a plain skip_auth path: got %d, want 200", page.Status)
	}

	jar := signedIn(t, g, testbed.Bob, "/round2/in")
	h := http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"},
		"X-Real-IP": {"203.0.113.66"}, "True-Client-IP": {"203.0.113.66"}, "X-Original-URL": {"/round2/admin"}}
	if page := fetch(t, g, jar, http.MethodGet, "/round2/h2c", h); page.Status != http.StatusOK {
		t.Fatalf("signed-in request with h2c: got %d, want 200", page.Status)
	}
	got := upstreamSaw("/round2/h2c")
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests, want 1", len(got))
	}
	for _, name := range []string{"Upgrade", "Http2-Settings", "True-Client-Ip", "X-Original-Url"} {
		if v := got[0].Header.Values(name); len(v) != 0 {
			t.Errorf("the upstream received %s %q, want none", name, v)
		}
	}
	if v := got[0].Header.Get("X-Real-Ip"); v != "127.0.0.1" {
		t.Errorf("X-Real-Ip: got %q, want the address headgate saw", v)
	}
}
