package linker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestListUsers(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	cli := f.add("alice", "alice@example.com", oidcID("alice-sub"))
	f.add("", "bob@example.com", "")
	users, err := f.client(time.Second, 0).ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 {
		t.Fatalf("users: got %d, want 2", len(users))
	}
	if users[0] != cli {
		t.Errorf("first user: got %+v, want %+v", users[0], cli)
	}
	if got := users[1]; got.ID != "2" || got.Name != "" || got.Provider != "" || got.ProviderID != "" {
		t.Errorf("CLI user: got %+v, want id 2 without name or provider", got)
	}
	wantCalls(t, f, 1, "requests")
}

func TestListUsersBadKey(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	const wrong = "hskey-api-wrong-key-do-not-print"
	hs := NewHeadscale(defaulted(HeadscaleConfig{URL: f.srv.URL, APIKey: wrong}), nil)
	_, err := hs.ListUsers(context.Background())
	if err == nil {
		t.Fatal("list with a wrong key: got nil error")
	}
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error: got %q, want the status 401 in it", err)
	}
	if !errors.Is(err, ErrAPIKeyRefused) {
		t.Errorf("error: got %q, want ErrAPIKeyRefused", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), f.key) {
		t.Errorf("error: got %q, want no API key in it", err)
	}
}

func TestListUsersErrorNeverEchoesKey(t *testing.T) {
	t.Parallel()
	// A proxy in front of Headscale that repeats the request in its error page.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway for "+r.Header.Get("Authorization"), http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	const key = "hskey-api-secret-value"
	_, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: key}), nil).ListUsers(context.Background())
	if err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("error: got %v, want one with status 502", err)
	}
	if strings.Contains(err.Error(), key) {
		t.Errorf("error: got %q, want no API key in it", err)
	}
}

func TestListUsersMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body string }{
		{"truncated", `{"users":[{"id":"1","name":"alice"`},
		{"html", `<html><body>Headplane</body></html>`},
		{"no users array", `{}`},
		{"null users", `{"users":null}`},
		{"users not an array", `{"users":{"id":"1"}}`},
		{"numeric id", `{"users":[{"id":1,"name":"alice"}]}`},
		{"empty body", ``},
	}
	f := newFakeHeadscale(t)
	hs := f.client(time.Second, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := decodeUsers(strings.NewReader(tt.body))
			if err == nil {
				t.Errorf("decode %q: got %d users and nil error, want an error", tt.body, len(users))
			}
		})
	}
	// And through the client, end to end.
	f.change(func(f *fakeHeadscale) { f.raw = []byte(`{"users":[{"id":"1",`) })
	if _, err := hs.ListUsers(context.Background()); err == nil {
		t.Error("list with a truncated body: got nil error")
	}
}

func TestListUsersEmpty(t *testing.T) {
	t.Parallel()
	users, err := decodeUsers(strings.NewReader(`{"users":[]}`))
	if err != nil || len(users) != 0 {
		t.Errorf("empty list: got %d users and %v, want 0 and nil", len(users), err)
	}
}

func TestCappedReader(t *testing.T) {
	t.Parallel()
	body := []byte(`{"users":[{"id":"1"}]}`)
	n := int64(len(body))
	tests := []struct {
		name    string
		limit   int64
		wantErr error
	}{
		{"exactly the limit", n, nil},
		{"one byte over", n - 1, errTooLarge},
		{"far over", 4, errTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			err := json.NewDecoder(&cappedReader{r: bytes.NewReader(body), n: tt.limit}).Decode(&v)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("decode with limit %d of %d bytes: got %v, want %v", tt.limit, n, err, tt.wantErr)
			}
		})
	}
	// Trailing bytes past a complete value are not read.
	got, err := io.ReadAll(&cappedReader{r: bytes.NewReader(body), n: n})
	if err != nil || len(got) != len(body) {
		t.Errorf("read all at the limit: got %d bytes and %v, want %d and nil", len(got), err, len(body))
	}
}

func TestListUsersTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	f.change(func(f *fakeHeadscale) { f.delay = 5 * time.Second })
	start := time.Now()
	_, err := f.client(100*time.Millisecond, 0).ListUsers(context.Background())
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error: got %v, want context.DeadlineExceeded", err)
	}
	if took > time.Second {
		t.Errorf("took: got %v, want about 100ms", took)
	}
}

func TestListUsersBodyBoundByTimeout(t *testing.T) {
	t.Parallel()
	// Headers at once, then a body that never ends.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"users":[`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	_, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: "k", Timeout: 100 * time.Millisecond}), nil).ListUsers(context.Background())
	if err == nil {
		t.Fatal("stalled body: got nil error")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took: got %v, want about 100ms", took)
	}
}

func TestHeadscaleURLWithPath(t *testing.T) {
	t.Parallel()
	paths := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path
		w.Write([]byte(`{"users":[]}`))
	}))
	t.Cleanup(srv.Close)
	if _, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL + "/headscale/", APIKey: "k"}), nil).ListUsers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-paths; got != "/headscale/api/v1/user" {
		t.Errorf("path: got %q, want /headscale/api/v1/user", got)
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	hs := f.client(time.Second, 0)
	const policy = "// comments and \"quotes\" travel as they are\n{\"groups\": {\"group:admins\": [\"alice@\",],},}\n"
	f.setPolicy(policy)
	got, err := hs.Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != policy {
		t.Errorf("policy: got %q, want %q", got, policy)
	}
	f.setPolicy("")
	if got, err := hs.Policy(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("empty policy: got %q and %v, want none and nil", got, err)
	}
	if got := f.policyCalls.Load(); got != 2 {
		t.Errorf("policy requests: got %d, want 2", got)
	}
	wantCalls(t, f, 0, "user requests")
}

func TestPolicyNoneSet(t *testing.T) {
	t.Parallel()
	// Headscale's answers when it has no policy, in database mode and in file mode without a
	// path, and answers that look alike but are failures.
	tests := []struct {
		name   string
		status int
		body   string
		none   bool
	}{
		{"database mode, none set", 500, `{"code":2,"message":"loading ACL from database: acl policy not found","details":[]}`, true},
		{"file mode, no path", 500, `{"code":2,"message":"reading policy from path \"\": open : no such file or directory","details":[]}`, true},
		{"file mode, missing file", 500, `{"code":2,"message":"reading policy from path \"/etc/headscale/acl.hujson\": open /etc/headscale/acl.hujson: no such file or directory","details":[]}`, false},
		{"database down", 500, `{"code":2,"message":"loading ACL from database: database is locked","details":[]}`, false},
		{"not found from a proxy", 502, `{"code":2,"message":"loading ACL from database: acl policy not found","details":[]}`, false},
		{"plain text", 500, `acl policy not found`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			got, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: "k"}), nil).Policy(context.Background())
			switch {
			case tt.none && (err != nil || len(got) != 0):
				t.Errorf("got %q and %v, want no policy and nil", got, err)
			case !tt.none && err == nil:
				t.Errorf("got %q and nil error, want an error", got)
			case !tt.none && !strings.HasPrefix(err.Error(), "get headscale policy: headscale answered "):
				t.Errorf("error: got %q, want one with the status", err)
			}
		})
	}
}

func TestPolicyMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body string }{
		{"no policy string", `{"updatedAt":"2026-03-01T10:00:00Z"}`},
		{"null policy", `{"policy":null}`},
		{"policy not a string", `{"policy":{"groups":{}}}`},
		{"html", `<html><body>Headplane</body></html>`},
		{"truncated", `{"policy":"{\"groups\"`},
		{"too large", `{"policy":"` + strings.Repeat(" ", maxPolicyBytes) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			got, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: "k"}), nil).Policy(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), "get headscale policy: ") {
				t.Errorf("got %d bytes and %v, want an error", len(got), err)
			}
		})
	}
}

func TestPolicyErrorsNeverEchoKey(t *testing.T) {
	t.Parallel()
	f := newFakeHeadscale(t)
	const wrong = "hskey-api-wrong-key-do-not-print"
	_, err := NewHeadscale(defaulted(HeadscaleConfig{URL: f.srv.URL, APIKey: wrong}), nil).Policy(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("error: got %v, want one with status 401", err)
	}
	// A proxy in front of Headscale that repeats the request in its error page.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway for "+r.Header.Get("Authorization"), http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	const key = "hskey-api-secret-value"
	_, err2 := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: key}), nil).Policy(context.Background())
	if err2 == nil || !strings.Contains(err2.Error(), "502") {
		t.Fatalf("error: got %v, want one with status 502", err2)
	}
	for _, e := range []string{err.Error(), err2.Error()} {
		if strings.Contains(e, wrong) || strings.Contains(e, key) || strings.Contains(e, f.key) {
			t.Errorf("error: got %q, want no API key in it", e)
		}
	}
}

func TestPolicyTimeout(t *testing.T) {
	t.Parallel()
	// Headers at once, then a body that never ends.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"policy":"`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	_, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: "k", Timeout: 100 * time.Millisecond}), nil).Policy(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error: got %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took: got %v, want about 100ms", took)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   string // "" for an error
	}{
		{"release", http.StatusOK, `{"version":"v0.29.3","commit":"abc","buildTime":"unknown","dirty":false}`, "v0.29.3"},
		{"development build", http.StatusOK, `{"version":"dev","commit":"unknown"}`, "dev"},
		{"no version endpoint", http.StatusNotFound, `404 page not found`, ""},
		{"not Headscale", http.StatusOK, `<html>hello</html>`, ""},
		{"no version in the answer", http.StatusOK, `{"commit":"abc"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/version" || r.Header.Get("Authorization") != "" {
					http.Error(w, "want GET /version without an API key", http.StatusTeapot)
					return
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			got, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL + "/", APIKey: "k"}), nil).Version(context.Background())
			switch {
			case tt.want != "" && (err != nil || got != tt.want):
				t.Errorf("got %q, %v, want %q", got, err, tt.want)
			case tt.want == "" && err == nil:
				t.Errorf("got %q, want an error", got)
			}
		})
	}
}

func TestVersionTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	began := time.Now()
	_, err := NewHeadscale(defaulted(HeadscaleConfig{URL: srv.URL, APIKey: "k", Timeout: 100 * time.Millisecond}), nil).Version(context.Background())
	if err == nil {
		t.Fatal("got no error from a Headscale that never answers")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v, want about the 100ms timeout", took)
	}
}
