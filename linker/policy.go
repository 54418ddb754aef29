package linker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tailscale/hujson"
)

// GroupPrefix starts every group name in a Headscale policy ("group:admins").
const GroupPrefix = "group:"

// policyGroups reads the groups of a Headscale ACL policy: each group's name (with its
// "group:" prefix) and its members as written. The policy is HuJSON (JSON with comments and
// trailing commas), as Headscale reads it. An empty policy has no groups.
func policyGroups(policy []byte) (map[string][]string, error) {
	if len(strings.TrimSpace(string(policy))) == 0 {
		return nil, nil
	}
	std, err := hujson.Standardize(policy)
	if err != nil {
		return nil, fmt.Errorf("read headscale policy: %w", err)
	}
	var p struct {
		Groups map[string][]string `json:"groups"`
	}
	if err := json.Unmarshal(std, &p); err != nil {
		return nil, fmt.Errorf("read headscale policy: %w", err)
	}
	for name := range p.Groups {
		if !strings.HasPrefix(name, GroupPrefix) || len(name) == len(GroupPrefix) {
			return nil, fmt.Errorf("read headscale policy: group %q does not start with %q", name, GroupPrefix)
		}
	}
	return p.Groups, nil
}

// groupsByUser resolves the members of groups to Headscale users the way Headscale does and
// returns, for each user ID, the names of that user's groups, sorted. A member is a token
// ending in "@" or an email: without its trailing "@", it names the user whose provider ID it
// is, or else the one user whose email or name it is, exactly (case matters). A token that
// names no user, or several, resolves to nobody, as in Headscale.
func groupsByUser(groups map[string][]string, users []User) map[string][]string {
	if len(groups) == 0 {
		return nil
	}
	byProvider := make(map[string]string, len(users))
	byOther := make(map[string][]string, 2*len(users))
	for _, u := range users {
		if u.ProviderID != "" {
			if _, ok := byProvider[u.ProviderID]; !ok {
				byProvider[u.ProviderID] = u.ID
			}
		}
		// A user whose email and name are the same token counts once, as in Headscale.
		byOther[u.Email] = append(byOther[u.Email], u.ID)
		if u.Name != u.Email {
			byOther[u.Name] = append(byOther[u.Name], u.ID)
		}
	}
	resolve := func(token string) (string, bool) {
		t := strings.TrimSuffix(token, "@")
		if t == "" {
			return "", false
		}
		if id, ok := byProvider[t]; ok {
			return id, true
		}
		if ids := byOther[t]; len(ids) == 1 {
			return ids[0], true
		}
		return "", false
	}
	out := make(map[string][]string)
	for name, members := range groups {
		for _, m := range members {
			if id, ok := resolve(m); ok && !slices.Contains(out[id], name) {
				out[id] = append(out[id], name)
			}
		}
	}
	for id := range out {
		slices.Sort(out[id])
	}
	return out
}
