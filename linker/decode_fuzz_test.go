package linker

import (
	"strings"
	"testing"
)

// FuzzDecodeUsers feeds arbitrary bodies to the Headscale listing decoder: it must never panic,
// and a body it accepts must yield users whose indexes can be built and searched.
func FuzzDecodeUsers(f *testing.F) {
	f.Add(`{"users":[{"id":"1","name":"alice","email":"alice@example.com","providerId":"https://idp.example.com/a","provider":"oidc","createdAt":"2026-01-01T00:00:00Z","extra":{"x":[1,2]}}]}`)
	f.Add(`{"users":[]}`)
	f.Add(`{"users":null}`)
	f.Add(`{"users":[{"id":1}]}`)
	f.Add(`{}`)
	f.Add(`{"type":"about:blank","title":"Unauthorized","status":401}`)
	f.Add(`{"users":[{"id":"1","providerId":"HTTPS://IDP//x/ y"}` + strings.Repeat(" ", 10))
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
	})
}
