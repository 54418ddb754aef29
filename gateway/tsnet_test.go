//go:build tailnet

package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckTailnet: headgate -check's tailnet lines for a control server that answers a
// joining node, one that refuses this client's version, one that is not a control server, and
// none at all; and for a state directory with and without a node's state.
func TestCheckTailnet(t *testing.T) {
	control := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/key" || r.URL.Query().Get("v") == "" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	down := httptest.NewServer(nil)
	down.Close()
	empty, joined := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(joined, "tailscaled.state"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		controlURL string
		stateDir   string
		authKey    string
		want       []string
	}{
		{"answers, joined before", control(http.StatusOK, `{"publicKey":"mkey:abc"}`), joined, "",
			[]string{"OK tailnet.control_url: the control server at", "OK tailnet.state_dir: holds the node's state"}},
		{"answers, first start with a key", control(http.StatusOK, `{"publicKey":"mkey:abc"}`), empty, "hskey-auth-x",
			[]string{"OK tailnet.control_url", "OK tailnet.auth_key: set: the first start joins with it"}},
		{"first start without a key", control(http.StatusOK, `{"publicKey":"mkey:abc"}`), empty, "",
			[]string{"OK tailnet.control_url", "FAIL tailnet.auth_key: required"}},
		{"version refused", control(http.StatusBadRequest, "unsupported client version"), joined, "",
			[]string{"FAIL tailnet.control_url: GET /key: 400 Bad Request: unsupported client version", "OK tailnet.state_dir"}},
		{"not a control server", control(http.StatusOK, `<html>`), joined, "",
			[]string{"FAIL tailnet.control_url: GET /key: the answer names no control key", "OK tailnet.state_dir"}},
		{"down", down.URL, joined, "", []string{"FAIL tailnet.control_url: GET /key:", "OK tailnet.state_dir"}},
		{"state_dir a file", control(http.StatusOK, `{"publicKey":"mkey:abc"}`), filepath.Join(joined, "tailscaled.state"), "k",
			[]string{"OK tailnet.control_url", "FAIL tailnet.state_dir: " + filepath.Join(joined, "tailscaled.state") + " is not a directory"}},
	}
	for _, tt := range tests {
		c := TailnetConfig{ControlURL: tt.controlURL, StateDir: tt.stateDir, AuthKey: tt.authKey}
		found := CheckTailnet(context.Background(), c, 5*time.Second)
		if len(found) != len(tt.want) {
			t.Errorf("%s: got %v, want %d findings", tt.name, found, len(tt.want))
			continue
		}
		for i, f := range found {
			if got := f.Status + " " + f.Key + ": " + f.Detail; !strings.HasPrefix(got, tt.want[i]) {
				t.Errorf("%s: got %q, want it to start with %q", tt.name, got, tt.want[i])
			}
		}
	}
	if found := CheckTailnet(context.Background(), TailnetConfig{}, time.Second); found != nil {
		t.Errorf("tailnet off: got %v, want nothing", found)
	}
}
