package linker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const redisAddr = "127.0.0.1:6379"

// testIssuer is the issuer of the identities in these tests.
const testIssuer = "https://idp.example.com/realms/main"

// fakeHeadscale serves GET /api/v1/user and GET /api/v1/policy the way Headscale does: users as
// JSON with string ids and fields the linker does not know, the policy as a JSON string, the API
// key checked, 401 in plain text.
type fakeHeadscale struct {
	srv   *httptest.Server
	key   string
	calls atomic.Int64 // requests to /api/v1/user

	mu     sync.Mutex
	users  []User
	body   []byte        // the encoded users, nil after a change
	raw    []byte        // when set, sent instead of the users
	status int           // when set, answer with this status and a plain-text body
	delay  time.Duration // wait this long (or until the client gives up) before answering
	// tooLarge answers an unfiltered listing as Headscale does past its gRPC message limit;
	// filtered lookups (?email=, ?name=) still work, as they do in Headscale.
	tooLarge bool
	filtered atomic.Int64 // requests with a filter

	// policy is the ACL policy; nil answers as Headscale does in database mode before a policy
	// was ever set.
	policy      *string
	policyCalls atomic.Int64 // requests to /api/v1/policy
}

func newFakeHeadscale(t testing.TB) *fakeHeadscale {
	t.Helper()
	f := &fakeHeadscale{key: "hskey-api-" + rand.Text()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHeadscale) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/api/v1/policy" {
		f.servePolicy(w, r)
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != "/api/v1/user" {
		http.NotFound(w, r)
		return
	}
	f.calls.Add(1)
	f.mu.Lock()
	delay, status, raw, tooLarge := f.delay, f.status, f.raw, f.tooLarge
	body := f.encodedLocked()
	var match []User
	field, value := "", ""
	for _, k := range []string{"name", "email", "id"} { // Headscale applies one filter, in this order
		if v := r.URL.Query().Get(k); v != "" {
			field, value = k, v
			break
		}
	}
	for _, u := range f.users {
		if (field == "name" && u.Name == value) || (field == "email" && u.Email == value) || (field == "id" && u.ID == value) {
			match = append(match, u)
		}
	}
	f.mu.Unlock()
	if field != "" {
		f.filtered.Add(1)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if field != "" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"users": append([]User{}, match...)})
		return
	}
	if tooLarge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"code":8,"message":"grpc: received message larger than max (5339108 vs. 4194304)","details":[]}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if raw != nil {
		w.Write(raw)
		return
	}
	w.Write(body)
}

func (f *fakeHeadscale) servePolicy(w http.ResponseWriter, r *http.Request) {
	f.policyCalls.Add(1)
	f.mu.Lock()
	policy, status := f.policy, f.status
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if policy == nil {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"code":2,"message":"loading ACL from database: acl policy not found","details":[]}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"policy": *policy, "updatedAt": "2026-03-01T10:00:00.123456789Z"})
}

// setPolicy makes policy the ACL policy f serves.
func (f *fakeHeadscale) setPolicy(policy string) {
	f.change(func(f *fakeHeadscale) { f.policy = &policy })
}

// encodedLocked returns the users as Headscale's API sends them, encoding them once per change.
func (f *fakeHeadscale) encodedLocked() []byte {
	if f.body != nil {
		return f.body
	}
	type apiUser struct {
		ID            string `json:"id"`
		Name          string `json:"name"`
		CreatedAt     string `json:"createdAt"`
		DisplayName   string `json:"displayName"`
		Email         string `json:"email"`
		ProviderID    string `json:"providerId"`
		Provider      string `json:"provider"`
		ProfilePicURL string `json:"profilePicUrl"`
		// A field no Headscale sends yet: decoding must ignore it.
		Future map[string]int `json:"futureField"`
	}
	list := make([]apiUser, len(f.users))
	for i, u := range f.users {
		list[i] = apiUser{
			ID: u.ID, Name: u.Name, CreatedAt: "2026-03-01T10:00:00.123456Z", DisplayName: u.DisplayName,
			Email: u.Email, ProviderID: u.ProviderID, Provider: u.Provider,
			ProfilePicURL: "https://example.com/pic/" + u.ID, Future: map[string]int{"x": 1},
		}
	}
	b, err := json.Marshal(map[string]any{"users": list})
	if err != nil {
		panic(err)
	}
	f.body = b
	return b
}

// add adds a user with the next id; a non-empty providerID makes it an OIDC user.
func (f *fakeHeadscale) add(name, email, providerID string) User {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := User{ID: strconv.Itoa(len(f.users) + 1), Name: name, DisplayName: name + " Example", Email: email, ProviderID: providerID}
	if providerID != "" {
		u.Provider = "oidc"
	}
	f.users = append(f.users, u)
	f.body = nil
	return u
}

// change edits the users or the way the server answers.
func (f *fakeHeadscale) change(edit func(f *fakeHeadscale)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f)
	f.body = nil
}

// wantCalls checks that f has answered want requests for users; what names them in a failure.
func wantCalls(t *testing.T, f *fakeHeadscale, want int64, what string) {
	t.Helper()
	if got := f.calls.Load(); got != want {
		t.Errorf("%s: got %d, want %d", what, got, want)
	}
}

// client returns a Headscale client of this server with the right key.
func (f *fakeHeadscale) client(timeout, listMaxAge time.Duration) *Headscale {
	return NewHeadscale(defaulted(HeadscaleConfig{URL: f.srv.URL, APIKey: f.key, Timeout: timeout, ListMaxAge: listMaxAge}), nil)
}

// newTestLinker returns a Linker on f and the system clock, with a MemoryCache unless cache is
// given.
func newTestLinker(f *fakeHeadscale, cfg Config, cache Cache) *Linker {
	return New(defaulted(cfg), f.client(2*time.Second, 0), cache, Timing{})
}

// newClockedLinker is newTestLinker on the times t gives, clock and intervals.
func newClockedLinker(f *fakeHeadscale, cfg Config, cache Cache, t Timing) *Linker {
	return New(defaulted(cfg), f.client(2*time.Second, 0), cache, t)
}

// identity returns a verified identity of testIssuer.
func identity(sub, email string) Identity {
	return Identity{Issuer: testIssuer, Subject: sub, Email: email, EmailVerified: true}
}

// oidcID is the providerId Headscale stores for identity(sub, ...).
func oidcID(sub string) string { return ProviderID(testIssuer, sub) }

func mustResolve(t *testing.T, l *Linker, id Identity) Link {
	t.Helper()
	link, err := l.Resolve(context.Background(), id)
	if err != nil {
		t.Fatalf("resolve %s: %v", id.Subject, err)
	}
	return link
}

// testRedis returns a client of the test Redis and a key prefix of this test's own; the keys
// under it are deleted when the test ends.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("these tests need Redis on %s (start one with: redis-server --daemonize yes --port 6379 --save \"\"): %v", redisAddr, err)
	}
	prefix := "test:linker:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c, prefix
}

// waitFor calls cond until it holds, for at most a generous bound (machine load must not decide
// a test), and reports whether it held. It is for what a test cannot move itself, such as a
// Redis key's expiry; a Timing's intervals are passed with a fakeClock instead.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// waitListing returns once no user listing of l is in flight (one that may still be failing),
// so that the next call asks Headscale anew.
func waitListing(l *Linker) {
	l.users.listing.flight.Do(listingFlight, func() (any, error) { return nil, nil })
}

// defaulted returns c with its defaults applied, as loading gateway.yaml applies them before
// anything is built from it.
func defaulted[C any, P interface {
	*C
	SetDefaults()
}](c C) C {
	P(&c).SetDefaults()
	return c
}
