package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The identity that reaches the upstream: unique to one person, and sendable.

// TestSharedNameRefused: no two people may reach the upstream under one name. A person whose
// Headscale user's name another user has too is refused at sign-in, and a session whose user's
// name became shared later is refused once the link is checked again.
func TestSharedNameRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withHeadplane, func(o *envOptions) { o.ttl = time.Nanosecond })
	withAlice(e)
	b, _ := e.signedIn(t)
	sent := e.upstream.count()

	e.headscale.addUser("5", "Alice ", "other@example.com", "") // a CLI user, its name differing in case and space
	resp, body := e.send(t, b, http.MethodGet, "/admin/machines", "", "", http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not unique") || !strings.Contains(body, "\u201calice\u201d") {
		t.Errorf("page: got %d %q, want 403 naming the shared name", resp.StatusCode, body)
	}
	if strings.Contains(body, "other@example.com") || strings.Contains(body, "Alice ") {
		t.Errorf("page %q shows the other user", body)
	}
	resp, _ = e.send(t, b, http.MethodGet, "/oauth2/auth", "", "", nil)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Headscale-User") != "" {
		t.Errorf("forward auth: got %d with X-Headscale-User %q, want 403 and none", resp.StatusCode, resp.Header.Get("X-Headscale-User"))
	}
	resp, _ = e.send(t, b, http.MethodGet, "/admin/machines.data", "", "", fetchHeader)
	checkRemixRedirect(t, resp, e.srv.URL+"/admin/machines")
	if n := e.upstream.count(); n != sent {
		t.Errorf("the upstream received %d requests under the shared name, want none", n-sent)
	}
	if !strings.Contains(e.logs.String(), `headscale user 1 shares its name \"alice\" with user(s) 5`) {
		t.Errorf("no log line naming the users:\n%s", e.logs.String())
	}

	// A new sign-in is refused at once.
	_, resp = e.signIn(t, "/admin/")
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not unique") {
		t.Errorf("sign-in: got %d %q, want 403", resp.StatusCode, body)
	}
	if n := e.upstream.count(); n != sent {
		t.Errorf("the upstream received %d requests under the shared name, want none", n-sent)
	}

	// Renamed, the user is let in again.
	e.headscale.set(func(h *headscaleDouble) { h.users[1]["name"] = "alice2" })
	resp, _ = e.send(t, b, http.MethodGet, "/admin/machines", "", "", nil)
	if up := e.upstream.last(); resp.StatusCode != http.StatusOK || up.Header.Get("X-Headscale-User") != "alice" {
		t.Errorf("after the rename: got %d, want alice proxied", resp.StatusCode)
	}
}

// TestIdentityHeadersAreUnique: user values come from Headscale only, emails only when
// verified.
func TestIdentityHeadersAreUnique(t *testing.T) {
	t.Parallel()
	t.Run("unverified email", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, func(o *envOptions) { o.memory = true })
		withAlice(e)
		e.idp.SetUser(map[string]any{"sub": "alice-sub", "email": "boss@example.com", "email_verified": false,
			"preferred_username": "boss"})
		b, _ := e.signedIn(t)
		up := e.upstream.last()
		if got := up.Header.Values("X-Forwarded-Email"); len(got) != 0 {
			t.Errorf("X-Forwarded-Email: got %q, want none", got)
		}
		if got := up.Header.Get("X-Forwarded-User"); got != "alice" {
			t.Errorf("X-Forwarded-User: got %q, want the Headscale user alice", got)
		}
		resp, _ := e.send(t, b, http.MethodGet, "/oauth2/auth", "", "", nil)
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-Email") != "" || resp.Header.Get("X-Forwarded-Email") != "" {
			t.Errorf("forward auth: got %d, emails %q %q, want 202 and none", resp.StatusCode,
				resp.Header.Get("X-Auth-Request-Email"), resp.Header.Get("X-Forwarded-Email"))
		}
		if got := resp.Header.Get("X-Auth-Request-User"); got != "alice" {
			t.Errorf("X-Auth-Request-User: got %q, want alice", got)
		}
	})
	t.Run("unlinked allowed", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, func(o *envOptions) { o.memory = true; o.unlinked = "allow" })
		e.signedIn(t)
		up := e.upstream.last()
		for _, name := range []string{"X-Headscale-User", "X-Headscale-User-Id", "X-Forwarded-User"} {
			if got := up.Header.Values(name); len(got) != 0 {
				t.Errorf("%s: got %q, want none for a person without a Headscale user", name, got)
			}
		}
		if got := up.Header.Get("X-Forwarded-Email"); got != "alice@example.com" {
			t.Errorf("X-Forwarded-Email: got %q, want the verified email", got)
		}
	})
}

// TestUnsendableIdentityRefused: a name or email with a control character cannot go into a
// header; the person gets a page saying so (not a 502), the administrator a log line naming the
// field, and the upstream nothing. A tab is fine.
func TestUnsendableIdentityRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, field string
		claims      map[string]any // merged over alice's
		hsName      string         // alice's Headscale user name
	}{
		{"CRLF in preferred_username", "preferred_username", map[string]any{"preferred_username": "alice\r\nX-Headscale-User: root"}, "alice"},
		{"LF in email", "email", map[string]any{"email": "alice@example.com\nx"}, "alice"},
		{"NUL in email", "email", map[string]any{"email": "alice\x00@example.com"}, "alice"},
		{"CR in the Headscale name", "headscale user name", nil, "alice\r"},
		{"DEL in the Headscale name", "headscale user name", nil, "al\x7fice"},
		{"a tab", "", map[string]any{"preferred_username": "alice\tA"}, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, func(o *envOptions) { o.memory = true })
			e.headscale.addUser("1", tt.hsName, "alice@example.com", e.idp.URL+"/alice-sub")
			claims := map[string]any{"sub": "alice-sub", "email": "alice@example.com", "email_verified": true, "preferred_username": "alice"}
			for k, v := range tt.claims {
				claims[k] = v
			}
			e.idp.SetUser(claims)
			_, resp := e.signIn(t, "/app")
			body := readBody(t, resp)
			if tt.field == "" {
				if resp.StatusCode != http.StatusOK {
					t.Errorf("got %d %q, want 200", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Your identity cannot be passed on") {
				t.Errorf("got %d %q, want the 403 page", resp.StatusCode, body)
			}
			if n := e.upstream.count(); n != 0 {
				t.Errorf("the upstream received %d requests, want none", n)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "the "+tt.field+" of ") || strings.Contains(logs, "X-Headscale-User: root") {
				t.Errorf("log: want a line naming %q and not the value:\n%s", tt.field, logs)
			}
		})
	}
}
