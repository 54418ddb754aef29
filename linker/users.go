package linker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// userSource finds the Headscale users an identity may match. It reads them from Headscale's
// whole list (see sharedListing), or, for a while after Headscale could not send its whole list
// (see ErrListingTooLarge), looks up just the users that could be the identity's. It is safe
// for concurrent use.
type userSource struct {
	hs         *Headscale
	strategies []string // Config.Match: which lookups an identity needs
	listing    *sharedListing
	timing     Timing

	// tooLargeUntil (Unix nanoseconds on timing's clock) is set when Headscale could not send
	// its whole user list: until then, identities are looked up without trying the list.
	tooLargeUntil atomic.Int64
}

// newUserSource returns a source that asks hs, lists no more often than hs's ListMaxAge allows,
// and looks up users as strategies (a defaulted Config.Match) need.
func newUserSource(hs *Headscale, strategies []string, t Timing) *userSource {
	return &userSource{
		hs:         hs,
		strategies: strategies,
		listing:    newSharedListing(hs, hs.listMaxAge, t),
		timing:     t,
	}
}

// find returns a directory that holds every user id could match, asked of Headscale after
// notBefore.
func (s *userSource) find(ctx context.Context, id Identity, notBefore time.Time) (*directory, error) {
	if s.timing.Now().UnixNano() < s.tooLargeUntil.Load() {
		return s.lookup(ctx, id)
	}
	d, err := s.listing.get(ctx, notBefore)
	if errors.Is(err, ErrListingTooLarge) {
		// A failed listing costs Headscale its whole work: try it again only now and then.
		s.tooLargeUntil.Store(s.timing.Now().Add(s.timing.RelistAfter).UnixNano())
		return s.lookup(ctx, id)
	}
	return d, err
}

// lookup builds a directory of just the users that could be id's, for a Headscale with too many
// users to list: those with id's email (when email matching applies) and those named after id's
// preferred username or email (an OIDC user's name). The strategies then apply as usual; the
// email's uniqueness is judged among exact (case-sensitive) matches only.
func (s *userSource) lookup(ctx context.Context, id Identity) (*directory, error) {
	start := s.timing.Now()
	type query struct{ field, value string }
	var queries []query
	seen := map[query]bool{}
	add := func(field, value string) {
		if q := (query{field, value}); value != "" && !seen[q] {
			seen[q] = true
			queries = append(queries, q)
		}
	}
	strategies := s.strategies
	if id.Issuer == userIDIssuer {
		add("id", id.Subject)
		strategies = nil
	}
	for _, m := range strategies {
		switch m {
		case matchProviderID:
			add("name", id.PreferredUsername)
			add("name", id.Email)
		case matchEmail:
			if id.EmailVerified {
				add("email", id.Email)
			}
		}
	}
	var users []User
	ids := map[string]bool{}
	find := func(q query) error {
		found, err := s.hs.FindUsers(ctx, q.field, q.value)
		if err != nil {
			return err
		}
		for _, u := range found {
			if !ids[u.ID] {
				ids[u.ID] = true
				users = append(users, u)
			}
		}
		return nil
	}
	for _, q := range queries {
		if err := find(q); err != nil {
			return nil, err
		}
	}
	// The user found must be the only one with its name (see Link.NameSharedWith): ask for
	// every user of that name. Headscale's filter is exact, so only the full listing also
	// finds names that differ in case or Unicode form.
	d := newDirectory(users, start)
	if link := d.match(s.strategies, id, ProviderID(id.Issuer, id.Subject)); link.Linked() {
		if q := (query{"name", link.UserName}); !seen[q] {
			if err := find(q); err != nil {
				return nil, err
			}
			d = newDirectory(users, start)
		}
	}
	return d, nil
}
