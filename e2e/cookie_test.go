package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"headgate/session"

	"headgate/internal/testbed"
)

// sealWith seals s with secrets as headgate would, and returns it as a Cookie header value.
func sealWith(t *testing.T, secrets []string, s *session.Session) string {
	t.Helper()
	cfg := session.Config{Secret: secrets}
	cfg.SetDefaults()
	c, err := session.NewCookies(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := c.Seal(w, s); err != nil {
		t.Fatal(err)
	}
	k := w.Result().Cookies()[0]
	return k.Name + "=" + k.Value
}

// bobSession is a session for Bob as headgate would create it, with a fresh ID.
func bobSession(expires time.Duration) *session.Session {
	now := time.Now()
	return &session.Session{ID: session.NewID(), Issuer: stack.Issuer, Subject: testbed.Bob.Subject(), Email: testbed.Bob.Email,
		EmailVerified: true, IssuedAt: now, ExpiresAt: now.Add(expires)}
}

// TestForgedAndExpiredCookies: a cookie sealed with another secret, a cookie sealed with the
// right secret for a session headgate never started (no server-side record), and an expired
// cookie are all refused by the binary.
func TestForgedAndExpiredCookies(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	other := sealWith(t, []string{strings.Repeat("x", 48)}, bobSession(time.Hour))
	unrecorded := sealWith(t, []string{stack.SessionSecret}, bobSession(time.Hour))
	// Seal needs a lifetime of a second or more; 1.2 s leaves room for the call. Letting the
	// cookie age past its expiry in the running binary is what is tested, so this sleep stays.
	expiringSession := bobSession(1200 * time.Millisecond)
	expiring := sealWith(t, []string{stack.SessionSecret}, expiringSession)
	time.Sleep(time.Until(expiringSession.ExpiresAt))
	for name, cookie := range map[string]string{
		"sealed with another secret":        other,
		"valid seal, no server-side record": unrecorded,
		"expired":                           expiring,
	} {
		if page := fetch(t, g, nil, http.MethodGet, prefix+"x", api(cookie)); page.Status != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", name, page.Status)
		}
	}
	checkNoneReached(t, prefix)
}

// TestSecretRotation: with session.secret [new, old], cookies sealed with the old secret keep
// working and new ones are sealed with the new secret; once old is dropped, old cookies stop.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	old := gateway(t)
	newSecret := strings.Repeat("n", 40)
	rotating := extraGateway(t, "rotating", testbed.GatewayOptions{Extra: map[string]any{
		"session": map[string]any{"secret": []string{newSecret, stack.SessionSecret}}}})
	rotated := extraGateway(t, "rotated", testbed.GatewayOptions{Extra: map[string]any{
		"session": map[string]any{"secret": []string{newSecret}}}})
	prefix := testPrefix(t)

	oldCookie := loginCookie(t, old, testbed.Bob, prefix+"old")
	wantAPIStatus(t, rotating, prefix+"a", oldCookie, http.StatusOK, "old cookie on [new, old]")
	wantAPIStatus(t, rotated, prefix+"b", oldCookie, http.StatusUnauthorized, "old cookie on [new]")
	newCookie := loginCookie(t, rotating, testbed.Bob, prefix+"new")
	wantAPIStatus(t, rotated, prefix+"c", newCookie, http.StatusOK, "cookie sealed by [new, old] on [new]")
	wantAPIStatus(t, old, prefix+"d", newCookie, http.StatusUnauthorized, "cookie sealed with new on [old]")
}

// TestOversizedBody: a large upload without a session is refused without being read into
// memory; with a session it streams to the upstream.
func TestOversizedBody(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	prefix := testPrefix(t)
	body := strings.Repeat("x", 16<<20)
	post := func(cookie string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, g.URL+prefix+"upload", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			// A server may close the connection while a refused upload is still being sent.
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(""); got != http.StatusUnauthorized && got != -1 {
		t.Errorf("16 MiB upload without a session: got %d, want 401 or a closed connection", got)
	}
	cookie := loginCookie(t, g, testbed.Bob, prefix+"in")
	if got := post(cookie); got != http.StatusOK {
		t.Errorf("16 MiB upload with a session: got %d, want 200", got)
	}
	if got := upstreamSaw(prefix + "upload"); len(got) != 1 || got[0].Method != http.MethodPost {
		t.Errorf("the upstream received %d uploads, want 1", len(got))
	}
}
