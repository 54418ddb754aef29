package linker

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// groupsPolicy is a policy in the HuJSON Headscale reads: alice and bob are admins by their
// name and email, carol an operator by her provider ID.
const groupsPolicy = `// who may do what
{
	"groups": {
		"group:admins": ["alice@", "bob@example.com"],
		"group:ops": ["alice@", "https://idp.example.com/realms/main/carol-sub@"],
	},
	"acls": [{"action": "accept", "src": ["group:admins"], "dst": ["*:*"]}],
}`

// policyFixture is a fake Headscale with alice (1), bob (2) and carol (3) under groupsPolicy,
// and PolicyGroups of it on a fake clock.
type policyFixture struct {
	hs     *fakeHeadscale
	clock  *fakeClock
	groups *PolicyGroups
}

const testPolicyRefresh = time.Minute

func newPolicyFixture(t *testing.T) *policyFixture {
	t.Helper()
	f := newFakeHeadscale(t)
	f.add("alice", "alice@example.com", "")
	f.add("bob", "bob@example.com", "")
	f.add("carol", "carol@example.com", testIssuer+"/carol-sub")
	f.setPolicy(groupsPolicy)
	clock := newFakeClock(t)
	hs := NewHeadscale(defaulted(HeadscaleConfig{URL: f.srv.URL, APIKey: f.key, Timeout: 2 * time.Second, PolicyRefresh: testPolicyRefresh}), nil)
	return &policyFixture{hs: f, clock: clock, groups: NewPolicyGroups(hs, clock.timing())}
}

// want checks the groups of each user ID.
func (p *policyFixture) want(t *testing.T, want map[string][]string) {
	t.Helper()
	for id, groups := range want {
		if got := p.groups.Groups(id); !slices.Equal(got, groups) {
			t.Errorf("groups of user %s: got %q, want %q", id, got, groups)
		}
	}
}

// wantAge checks Age.
func (p *policyFixture) wantAge(t *testing.T, want time.Duration) {
	t.Helper()
	if got, ok := p.groups.Age(); !ok || got != want {
		t.Errorf("age: got %v, %v, want %v, true", got, ok, want)
	}
}

// run starts Run until the test ends and returns the channel of its reports.
func (p *policyFixture) run(t *testing.T) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan error)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.groups.Run(ctx, func(err error) { reports <- err })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return reports
}

// next moves the clock on by one refresh interval and returns the report of the refresh that
// follows.
func (p *policyFixture) next(t *testing.T, reports <-chan error) error {
	t.Helper()
	p.clock.Advance(testPolicyRefresh)
	select {
	case err := <-reports:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh within 10s of the interval passing")
		return nil
	}
}

var adminsAndOps = map[string][]string{
	"1": {"group:admins", "group:ops"},
	"2": {"group:admins"},
	"3": {"group:ops"},
	"4": nil, // no such user
}

func TestPolicyGroupsResolved(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	if err := p.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.want(t, adminsAndOps)
	p.wantAge(t, 0)
	if err := p.groups.Err(); err != nil {
		t.Errorf("err: got %v, want nil", err)
	}
	p.clock.Advance(5 * time.Second)
	p.wantAge(t, 5*time.Second)
	wantCalls(t, p.hs, 1, "user listings")
}

func TestPolicyGroupsBeforeRefresh(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	p.want(t, map[string][]string{"1": nil, "2": nil, "3": nil})
	if age, ok := p.groups.Age(); ok {
		t.Errorf("age: got %v, true, want false", age)
	}
	if err := p.groups.Err(); err != nil {
		t.Errorf("err: got %v, want nil", err)
	}
	if got := p.hs.policyCalls.Load(); got != 0 {
		t.Errorf("policy requests: got %d, want 0", got)
	}
}

func TestPolicyGroupsFollowChanges(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	reports := p.run(t)
	if err := <-reports; err != nil {
		t.Fatal(err)
	}
	p.want(t, adminsAndOps)

	// A change is not seen before the interval has passed, and then after one refresh.
	p.hs.setPolicy(`{"groups": {"group:admins": ["carol@example.com"]}}`)
	p.hs.add("dave", "dave@example.com", "")
	p.clock.Advance(testPolicyRefresh - time.Second)
	p.want(t, adminsAndOps)
	p.clock.Advance(time.Second)
	if err := <-reports; err != nil {
		t.Fatal(err)
	}
	p.want(t, map[string][]string{"1": nil, "2": nil, "3": {"group:admins"}})

	// A new user named in the policy is found at the next refresh.
	p.hs.setPolicy(`{"groups": {"group:admins": ["carol@example.com", "dave@"]}}`)
	if err := p.next(t, reports); err != nil {
		t.Fatal(err)
	}
	p.want(t, map[string][]string{"3": {"group:admins"}, "4": {"group:admins"}})
	if got := p.hs.policyCalls.Load(); got != 3 {
		t.Errorf("policy requests: got %d, want 3 (one per refresh)", got)
	}
	wantCalls(t, p.hs, 3, "user listings")
}

func TestPolicyGroupsHeadscaleDown(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	reports := p.run(t)
	if err := <-reports; err != nil {
		t.Fatal(err)
	}

	// Behind a proxy that answers for it.
	p.hs.change(func(f *fakeHeadscale) { f.status = http.StatusServiceUnavailable })
	for i := 1; i <= 2; i++ {
		if err := p.next(t, reports); err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("refresh %d: got %v, want an error with status 503", i, err)
		}
		p.want(t, adminsAndOps)
		p.wantAge(t, time.Duration(i)*testPolicyRefresh)
		if err := p.groups.Err(); err == nil {
			t.Error("err: got nil, want the failed refresh's")
		}
	}

	// Back, with a changed policy.
	p.hs.change(func(f *fakeHeadscale) { f.status = 0 })
	p.hs.setPolicy(`{"groups": {"group:ops": ["bob@"]}}`)
	if err := p.next(t, reports); err != nil {
		t.Fatal(err)
	}
	p.want(t, map[string][]string{"1": nil, "2": {"group:ops"}, "3": nil})
	p.wantAge(t, 0)
	if err := p.groups.Err(); err != nil {
		t.Errorf("err: got %v, want nil", err)
	}

	// Gone altogether.
	p.hs.srv.Close()
	if err := p.next(t, reports); err == nil {
		t.Fatal("refresh with Headscale gone: got nil error")
	}
	p.want(t, map[string][]string{"1": nil, "2": {"group:ops"}, "3": nil})
	p.wantAge(t, testPolicyRefresh)
}

func TestPolicyGroupsNoPolicy(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	if err := p.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.want(t, adminsAndOps)
	for _, policy := range []*string{nil, new(string), new(`{"acls": []}`)} {
		p.hs.change(func(f *fakeHeadscale) { f.policy = policy })
		if err := p.groups.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh: got %v, want nil", err)
		}
		p.want(t, map[string][]string{"1": nil, "2": nil, "3": nil})
		p.wantAge(t, 0)
	}
	// Without groups there is nothing to resolve: only the first refresh listed users.
	wantCalls(t, p.hs, 1, "user listings")
}

func TestPolicyGroupsFailedRefreshKeepsGroups(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		breakIt func(f *fakeHeadscale)
		want    string
	}{
		{"malformed policy", func(f *fakeHeadscale) { f.setPolicy(`{"groups": {"group:admins": ["alice@"]`) },
			"refresh policy groups: read headscale policy: "},
		{"group without its prefix", func(f *fakeHeadscale) { f.setPolicy(`{"groups": {"admins": ["alice@"]}}`) },
			"refresh policy groups: read headscale policy: "},
		{"user list too large", func(f *fakeHeadscale) { f.change(func(f *fakeHeadscale) { f.tooLarge = true }) },
			"refresh policy groups: list headscale users: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPolicyFixture(t)
			if err := p.groups.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(p.hs)
			p.clock.Advance(testPolicyRefresh)
			err := p.groups.Refresh(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("refresh: got %v, want an error starting %q", err, tt.want)
			}
			if got := p.groups.Err(); got != err {
				t.Errorf("err: got %v, want %v", got, err)
			}
			p.want(t, adminsAndOps)
			p.wantAge(t, testPolicyRefresh)
		})
	}
}

func TestPolicyGroupsAskNothingOfHeadscale(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	if err := p.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		p.want(t, adminsAndOps)
		p.groups.Age()
	}
	p.clock.Advance(24 * time.Hour) // past any interval: still nothing without Run
	p.want(t, adminsAndOps)
	if got := p.hs.policyCalls.Load(); got != 1 {
		t.Errorf("policy requests: got %d, want 1", got)
	}
	wantCalls(t, p.hs, 1, "user listings")
}

// TestPolicyGroupsLookupAllocs is not parallel: AllocsPerRun counts every goroutine's
// allocations.
func TestPolicyGroupsLookupAllocs(t *testing.T) {
	p := newPolicyFixture(t)
	if err := p.groups.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "4"} {
		if allocs := testing.AllocsPerRun(1000, func() { p.groups.Groups(id) }); allocs != 0 {
			t.Errorf("allocations per lookup of user %s: got %v, want 0", id, allocs)
		}
	}
}

func TestPolicyGroupsConcurrent(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if err := p.groups.Refresh(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range 2000 {
				if got := p.groups.Groups("2"); got != nil && !slices.Equal(got, []string{"group:admins"}) {
					t.Errorf("groups of user 2: got %q", got)
					return
				}
			}
		})
	}
	wg.Wait()
	p.want(t, adminsAndOps)
}

func TestPolicyGroupsRunStops(t *testing.T) {
	t.Parallel()
	p := newPolicyFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	reported := make(chan error, 1)
	go func() {
		defer close(done)
		p.groups.Run(ctx, func(err error) { reported <- err })
	}()
	if err := <-reported; err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after its context ended")
	}
	p.clock.Advance(testPolicyRefresh) // the refresh that was due never comes
	if got := p.hs.policyCalls.Load(); got != 1 {
		t.Errorf("policy requests: got %d, want 1", got)
	}
}

func BenchmarkPolicyGroupsLookup(b *testing.B) {
	f := newFakeHeadscale(b)
	var members []string
	for i := range 10_000 {
		u := f.add("user"+strconv.Itoa(i), "user"+strconv.Itoa(i)+"@example.com", "")
		if i%10 == 0 {
			members = append(members, `"`+u.Name+`@"`)
		}
	}
	f.setPolicy(`{"groups": {"group:admins": [` + strings.Join(members[:10], ",") + `], "group:staff": [` + strings.Join(members, ",") + `]}}`)
	g := NewPolicyGroups(f.client(5*time.Second, 0), Timing{})
	if err := g.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got := g.Groups("1"); !slices.Equal(got, []string{"group:admins", "group:staff"}) {
		b.Fatalf("groups of user 1: got %q", got)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			g.Groups("1")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Groups("1")
			}
		})
	})
}
