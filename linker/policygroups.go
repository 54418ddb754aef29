package linker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// PolicyGroups holds the groups of Headscale's ACL policy, resolved to Headscale users as
// Headscale resolves them, as of its last successful refresh. It is safe for concurrent use and
// meant to be asked on every request: Groups costs no I/O, lock or allocation, and Headscale is
// asked only by Refresh (which Run calls every headscale.policy_refresh).
//
// Before the first successful refresh nobody is in any group. After it, a refresh that fails
// (Headscale down, a policy that cannot be read) leaves the groups last read in force; Age says
// how old they are and Err why the last refresh failed.
type PolicyGroups struct {
	hs       *Headscale
	interval time.Duration
	timing   Timing

	// refreshing lets one refresh run at a time, so that an older answer never replaces a newer
	// one.
	refreshing sync.Mutex
	state      atomic.Pointer[groupState] // nil before the first successful refresh

	mu      sync.Mutex
	lastErr error // the error of the last refresh that ended
}

// groupState is what one successful refresh read. It is never modified once stored.
type groupState struct {
	byUser map[string][]string // user ID -> the names of the user's groups, sorted
	readAt time.Time           // when the refresh began
}

// NewPolicyGroups returns the groups of hs's policy, refreshed by Run every PolicyRefresh of
// the HeadscaleConfig hs was made from, on t's clock (the zero Timing: the system clock). It
// asks nothing of Headscale until Refresh or Run is called.
func NewPolicyGroups(hs *Headscale, t Timing) *PolicyGroups {
	return &PolicyGroups{hs: hs, interval: hs.policyRefresh, timing: t.withDefaults()}
}

// Groups returns the names of the policy groups the Headscale user with ID userID is in, sorted,
// such as "group:admins"; nil when the user is in none, and for everyone before the first
// successful refresh. The slice is shared: the caller must not modify it.
func (p *PolicyGroups) Groups(userID string) []string {
	s := p.state.Load()
	if s == nil {
		return nil
	}
	return s.byUser[userID]
}

// Age returns how long ago the refresh whose groups are in force began, and false before the
// first successful refresh.
func (p *PolicyGroups) Age() (time.Duration, bool) {
	s := p.state.Load()
	if s == nil {
		return 0, false
	}
	return p.timing.Now().Sub(s.readAt), true
}

// Err returns the error of the last refresh that ended, or nil if it succeeded or none has
// ended yet.
func (p *PolicyGroups) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Refresh reads Headscale's policy and, when it has groups, the user list, and puts the groups
// they resolve to in force. A policy without groups, or no policy at all, puts nobody in any
// group and needs no user list. On failure the groups in force stay as they were and the error
// is returned (and kept for Err). Refreshes run one at a time; each Headscale call is bounded by
// the Headscale timeout.
func (p *PolicyGroups) Refresh(ctx context.Context) error {
	p.refreshing.Lock()
	defer p.refreshing.Unlock()
	start := p.timing.Now()
	byUser, err := p.read(ctx)
	if err == nil {
		p.state.Store(&groupState{byUser: byUser, readAt: start})
	}
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
	return err
}

func (p *PolicyGroups) read(ctx context.Context) (map[string][]string, error) {
	policy, err := p.hs.Policy(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh policy groups: %w", err)
	}
	groups, err := policyGroups(policy)
	if err != nil {
		return nil, fmt.Errorf("refresh policy groups: %w", err)
	}
	if len(groups) == 0 {
		return nil, nil
	}
	users, err := p.hs.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh policy groups: %w", err)
	}
	return groupsByUser(groups, users), nil
}

// Run refreshes at once, then again each interval (headscale.policy_refresh) after the last
// refresh ended, until ctx ends. After each refresh it calls report, unless it is nil, with the
// refresh's error (nil on success), so that the caller can log failures; a refresh cut short
// because ctx ended is not reported. Run returns when ctx ends.
func (p *PolicyGroups) Run(ctx context.Context, report func(error)) {
	for {
		err := p.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		// The next refresh is due before the report goes out, so that a caller who moves the
		// clock on once it has the report always reaches it.
		next := make(chan struct{}, 1)
		p.timing.AfterFunc(p.interval, func() { next <- struct{}{} })
		if report != nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-next:
		}
	}
}
