package linker

import (
	"reflect"
	"strings"
	"testing"
)

func TestPolicyGroups(t *testing.T) {
	policy := `// Headscale policy, HuJSON
{
	"groups": {
		"group:admins": ["alice@", "bob@example.com",], // trailing commas and comments
		"group:ops": ["https://idp.example.com/carol-sub@"],
	},
	"acls": [{"action": "accept", "src": ["group:admins"], "dst": ["*:*"]}],
}`
	got, err := policyGroups([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"group:admins": {"alice@", "bob@example.com"},
		"group:ops":    {"https://idp.example.com/carol-sub@"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, empty := range []string{"", "  \n", `{}`, `{"acls": []}`} {
		if got, err := policyGroups([]byte(empty)); err != nil || len(got) != 0 {
			t.Errorf("%q: got %q, %v, want no groups", empty, got, err)
		}
	}
	for _, bad := range []string{`{`, `{"groups": {"admins": ["a@"]}}`, `{"groups": {"group:": ["a@"]}}`, `{"groups": ["a"]}`} {
		if _, err := policyGroups([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "read headscale policy: ") {
			t.Errorf("%q: got %v, want an error", bad, err)
		}
	}
}

func TestGroupsByUser(t *testing.T) {
	users := []User{
		{ID: "1", Name: "alice", Email: "alice@example.com", ProviderID: "https://idp.example.com/alice-sub", Provider: "oidc"},
		{ID: "2", Name: "bob", Email: "bob@example.com"},
		{ID: "3", Name: "carol", Email: "carol@example.com", ProviderID: "https://idp.example.com/carol-sub", Provider: "oidc"},
		{ID: "4", Name: "dave", Email: "shared@example.com"},
		{ID: "5", Name: "erin", Email: "shared@example.com"},
		{ID: "6", Name: "alice@example.com"}, // a CLI user named like alice's email
		{ID: "7", Name: "Frank"},
	}
	groups := map[string][]string{
		"group:admins": {"alice@", "bob@example.com", "bob@"},
		"group:ops":    {"https://idp.example.com/carol-sub@", "shared@example.com", "nobody@"},
		"group:email":  {"alice@example.com"}, // two users: alice by email, user 6 by name
		"group:case":   {"frank@", "Frank@"},
		"group:empty":  {"@", ""},
	}
	got := groupsByUser(groups, users)
	want := map[string][]string{
		"1": {"group:admins"},
		"2": {"group:admins"},
		"3": {"group:ops"},
		"7": {"group:case"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := groupsByUser(nil, users); got != nil {
		t.Errorf("no groups: got %q", got)
	}
}
