package gateway

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestClaimGroups(t *testing.T) {
	tests := []struct {
		name, claims, path string
		want               []string
		present            bool
	}{
		{"list", `{"groups": ["ops", "dev", "ops", 7, {"x": 1}, ""]}`, "groups", []string{"dev", "ops"}, true},
		{"one string", `{"groups": "admins"}`, "groups", []string{"admins"}, true},
		{"empty list", `{"groups": []}`, "groups", nil, true},
		{"absent", `{"email": "a@example.com"}`, "groups", nil, false},
		{"null", `{"groups": null}`, "groups", nil, false},
		{"keycloak realm roles", `{"realm_access": {"roles": ["admin", "offline_access"]}}`, "realm_access.roles", []string{"admin", "offline_access"}, true},
		{"keycloak client roles", `{"resource_access": {"headgate.example.com": {"roles": ["viewer"]}}}`, "resource_access.headgate.example.com.roles", []string{"viewer"}, true},
		{"namespaced claim", `{"https://example.com/groups": ["a"], "https://example": {"com/groups": ["b"]}}`, "https://example.com/groups", []string{"a"}, true},
		{"path through a list", `{"realm_access": ["roles"]}`, "realm_access.roles", nil, false},
		{"names kept exactly", `{"groups": ["Admins", "admins", "ops, infra", "gr\u00fcn"]}`, "groups", []string{"Admins", "admins", "gr\u00fcn", "ops, infra"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var claims map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tt.claims), &claims); err != nil {
				t.Fatal(err)
			}
			got, present, err := claimGroups(claims, tt.path)
			if err != nil || present != tt.present || !slices.Equal(got, tt.want) {
				t.Errorf("got %q, %v, %v, want %q, %v", got, present, err, tt.want, tt.present)
			}
		})
	}
	for name, claims := range map[string]string{
		"a number":  `{"groups": 5}`,
		"an object": `{"groups": {"a": "b"}}`,
		"too many":  `{"groups": [` + manyGroups(100) + `]}`,
		"too long":  `{"groups": ["` + strings.Repeat("g", maxGroupBytes+1) + `"]}`,
	} {
		var c map[string]json.RawMessage
		if err := json.Unmarshal([]byte(claims), &c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := claimGroups(c, "groups"); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
}

func manyGroups(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"a-group-with-a-rather-long-name-` + strings.Repeat("x", i%10) + string(rune('a'+i%26)) + `-` + string(rune('a'+i/26)) + `"`
	}
	return strings.Join(parts, ",")
}

// TestGroupsHeader: every group name, whatever it holds, comes back whole from the header by
// splitting on commas and percent-decoding, and the header holds only visible ASCII.
func TestGroupsHeader(t *testing.T) {
	groups := []string{"group:admins", "ops, infra", "100%", "a,b", "gr\u00fcn", "tab\there", "line\r\nX-Injected: 1", "x@example.com", "a/b", "sp ace", "plus+"}
	h := groupsHeader(groups)
	for i := 0; i < len(h); i++ {
		if h[i] < 0x21 || h[i] > 0x7e {
			t.Fatalf("header %q holds byte %#x", h, h[i])
		}
	}
	if back := splitGroups(t, h); !slices.Equal(back, groups) {
		t.Errorf("got %q back from %q, want %q", splitGroups(t, h), h, groups)
	}
	if got := groupsHeader([]string{"group:admins", "dev"}); got != "group:admins,dev" {
		t.Errorf("plain names: got %q", got)
	}
	if got := groupsHeader(nil); got != "" {
		t.Errorf("no groups: got %q", got)
	}
}
