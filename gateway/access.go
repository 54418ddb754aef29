package gateway

import (
	"fmt"
	"slices"
	"strings"

	"headgate/linker"
)

// AccessConfig says who may use an upstream, beyond having a proven identity. A person is let
// in when any one list names them; with every list empty, everyone headgate lets through
// (every linked person, and under unlinked: allow everyone signed in) is let in, as before
// access rules existed.
//
// Every comparison is exact (emails and domains ignore ASCII case only, as mail does): a name
// that differs by case, by a look-alike letter or by an invisible character names someone
// else.
type AccessConfig struct {
	// Emails lets in people whose verified email is one of these.
	Emails []string `yaml:"emails"`

	// EmailDomains lets in people whose verified email is at one of these domains, exactly
	// ("example.com" does not let in "corp.example.com").
	EmailDomains []string `yaml:"email_domains"`

	// Groups lets in members of these groups at the identity provider (oidc.groups_claim).
	Groups []string `yaml:"groups"`

	// HeadscaleGroups lets in members of these groups of Headscale's policy ("group:admins";
	// the "group:" may be left out).
	HeadscaleGroups []string `yaml:"headscale_groups"`

	// HeadscaleUsers lets in the people linked to these Headscale users, by name.
	HeadscaleUsers []string `yaml:"headscale_users"`
}

// Validate reports every problem of the rules, each prefixed by prefix (their YAML path).
func (c AccessConfig) Validate(prefix string) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+format, args...))
	}
	for i, e := range c.Emails {
		if at := strings.LastIndexByte(e, '@'); at <= 0 || at == len(e)-1 || strings.ContainsAny(e, " \t\r\n,") {
			add("emails[%d]: %q is not an email address", i, e)
		}
	}
	for i, d := range c.EmailDomains {
		if d == "" || strings.ContainsAny(d, "@ \t\r\n,/*") || strings.HasPrefix(d, ".") {
			add("email_domains[%d]: %q is not a domain (write example.com, without @ or wildcards)", i, d)
		}
	}
	for i, g := range c.Groups {
		if g == "" {
			add("groups[%d]: empty", i)
		}
	}
	for i, g := range c.HeadscaleGroups {
		if strings.TrimPrefix(g, linker.GroupPrefix) == "" {
			add("headscale_groups[%d]: empty", i)
		}
	}
	for i, u := range c.HeadscaleUsers {
		if u == "" {
			add("headscale_users[%d]: empty", i)
		}
	}
	return errs
}

// access is AccessConfig made ready to answer, once, at start.
type access struct {
	any             bool // no list: every proven identity
	emails          []string
	domains         []string
	groups          []string
	headscaleGroups []string
	headscaleUsers  []string
}

func newAccess(c AccessConfig) *access {
	a := &access{groups: c.Groups, headscaleUsers: c.HeadscaleUsers}
	a.emails = slices.Clone(c.Emails)
	a.domains = slices.Clone(c.EmailDomains)
	for _, g := range c.HeadscaleGroups {
		a.headscaleGroups = append(a.headscaleGroups, linker.GroupPrefix+strings.TrimPrefix(g, linker.GroupPrefix))
	}
	a.any = len(a.emails)+len(a.domains)+len(a.groups)+len(a.headscaleGroups)+len(a.headscaleUsers) == 0
	return a
}

// who is what access rules look at: the proven facts about one person.
type who struct {
	email           string // verified, or ""
	groups          []string
	headscaleUser   string // "" when unlinked
	headscaleGroups []string
}

// allows reports whether the rules let the person in.
func (a *access) allows(p who) bool {
	if a.any {
		return true
	}
	if p.email != "" {
		domain := p.email[strings.LastIndexByte(p.email, '@')+1:]
		for _, e := range a.emails {
			if asciiEqualFold(e, p.email) {
				return true
			}
		}
		for _, d := range a.domains {
			if asciiEqualFold(d, domain) {
				return true
			}
		}
	}
	if p.headscaleUser != "" && slices.Contains(a.headscaleUsers, p.headscaleUser) {
		return true
	}
	for _, g := range p.groups {
		if slices.Contains(a.groups, g) {
			return true
		}
	}
	for _, g := range p.headscaleGroups {
		if slices.Contains(a.headscaleGroups, g) {
			return true
		}
	}
	return false
}

// lacks names, for the person refused, the kinds of membership the rules ask for, without the
// rules' values: "an allowed email address or a group".
func (a *access) lacks() string {
	var kinds []string
	if len(a.emails)+len(a.domains) > 0 {
		kinds = append(kinds, "an allowed email address")
	}
	if len(a.groups) > 0 {
		kinds = append(kinds, "membership of an allowed group at the identity provider")
	}
	if len(a.headscaleGroups) > 0 {
		kinds = append(kinds, "membership of an allowed Headscale group")
	}
	if len(a.headscaleUsers) > 0 {
		kinds = append(kinds, "an allowed Headscale user")
	}
	switch len(kinds) {
	case 0:
		return ""
	case 1:
		return kinds[0]
	}
	return strings.Join(kinds[:len(kinds)-1], ", ") + " or " + kinds[len(kinds)-1]
}

// asciiEqualFold reports whether a and b are equal ignoring the case of ASCII letters only.
// strings.EqualFold would also take the Kelvin sign for "k" and the long s for "s", letting a
// look-alike address pass for an allowed one.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
