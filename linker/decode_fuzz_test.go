package linker

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeUsers feeds arbitrary bodies to the Headscale listing decoder: it must never panic,
// and a body it accepts must yield users whose indexes can be built and searched. Each user is
// then looked for by its provider ID (stored and cleaned), its email and its name, as Resolve
// looks, and the answers are checked against the users themselves: a user found really has the
// key, and a key that two users share is never answered as one user's.
func FuzzDecodeUsers(f *testing.F) {
	f.Add(`{"users":[{"id":"1","name":"alice","email":"alice@example.com","providerId":"https://idp.example.com/a","provider":"oidc","createdAt":"2026-01-01T00:00:00Z","extra":{"x":[1,2]}}]}`)
	f.Add(`{"users":[]}`)
	f.Add(`{"users":null}`)
	f.Add(`{"users":[{"id":1}]}`)
	f.Add(`{}`)
	f.Add(`{"type":"about:blank","title":"Unauthorized","status":401}`)
	f.Add(`{"users":[{"id":"1","providerId":"HTTPS://IDP//x/ y"}` + strings.Repeat(" ", 10))
	// Keys shared: a provider ID stored uncleaned and clean, an email in two cases, a name in
	// two Unicode forms, and a user without a name (named after its email).
	f.Add(`{"users":[{"id":"1","name":"Carol","email":"Bob@Example.com","providerId":"HTTPS://idp.example.com//a"},` +
		`{"id":"2","name":"ca\u0301rol","email":"bob@example.com","providerId":"https://idp.example.com/a"},` +
		`{"id":"3","email":"carol"},{"id":"3","name":"dave","email":"dave@example.com"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		users, err := decodeUsers(strings.NewReader(body))
		if err != nil {
			if users != nil {
				t.Fatalf("decodeUsers returned users with error %v", err)
			}
			return
		}
		for _, u := range users {
			// Cleaning a stored providerId must not panic whatever it holds.
			_ = ProviderID(u.ProviderID, "")
		}
		checkDirectory(t, users)
	})
}

// checkDirectory indexes users and looks each of them up by every key it has.
func checkDirectory(t *testing.T, users []User) {
	t.Helper()
	d := newDirectory(users, time.Time{})
	cleaned := make([]string, len(users))
	emails := make([]string, len(users))
	names := make([]string, len(users))
	for i := range users {
		cleaned[i] = cleanProviderID(users[i].ProviderID)
		emails[i] = emailKey(users[i].Email)
		names[i] = nameKey(userName(&users[i]))
	}
	// holders returns the indexes of the users for which has holds.
	holders := func(has func(i int) bool) []int32 {
		var is []int32
		for i := range users {
			if has(i) {
				is = append(is, int32(i))
			}
		}
		return is
	}

	for i, u := range users {
		if u.ProviderID != "" {
			for _, pid := range []string{u.ProviderID, cleaned[i]} {
				have := holders(func(j int) bool {
					return users[j].ProviderID != "" && (users[j].ProviderID == pid || cleaned[j] == pid)
				})
				found, reason := d.matchProviderID(pid)
				switch {
				case len(have) > 1 && reason == "":
					t.Fatalf("provider id %q of users %v: got user %d alone, want it refused as shared", pid, have, found)
				case len(have) == 1 && (reason != "" || found != have[0]):
					t.Fatalf("provider id %q: got user %d (%q), want user %d", pid, found, reason, have[0])
				}
			}
		}

		if u.Email != "" {
			have := holders(func(j int) bool { return emails[j] == emails[i] })
			// The user's own identity, so that its provider ID cannot refuse the match.
			found, reason := d.matchEmail(Identity{Email: u.Email, EmailVerified: true}, cleaned[i])
			switch {
			case len(have) > 1 && reason != fmt.Sprintf("ambiguous email (%d users)", len(have)):
				t.Fatalf("email %q of users %v: got user %d (%q), want it refused as ambiguous", u.Email, have, found, reason)
			case len(have) == 1 && (reason != "" || found != int32(i)):
				t.Fatalf("email %q: got user %d (%q), want user %d", u.Email, found, reason, i)
			case reason == "" && emails[found] != emails[i]:
				t.Fatalf("email %q: got user %d, whose email is %q", u.Email, found, users[found].Email)
			}
		}

		link := d.link(int32(i), matchProviderID)
		if link.UserID != u.ID || link.UserName != userName(&u) {
			t.Fatalf("link to user %d: got %+v, want id %q named %q", i, link, u.ID, userName(&u))
		}
		var others []string
		for _, j := range holders(func(j int) bool { return names[j] == names[i] }) {
			if j != int32(i) {
				others = append(others, users[j].ID)
			}
		}
		if !slices.Equal(link.NameSharedWith, others) {
			t.Fatalf("name %q of user %d: got shared with %v, want %v", link.UserName, i, link.NameSharedWith, others)
		}
	}
}
