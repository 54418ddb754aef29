package gateway

import (
	"strings"
	"testing"
)

func TestAccessAllows(t *testing.T) {
	rules := newAccess(AccessConfig{
		Emails:          []string{"Alice@Example.com"},
		EmailDomains:    []string{"corp.example.com"},
		Groups:          []string{"admins"},
		HeadscaleGroups: []string{"ops", "group:dev"},
		HeadscaleUsers:  []string{"carol"},
	})
	tests := []struct {
		name string
		who  who
		want bool
	}{
		{"email", who{email: "alice@example.com"}, true},
		{"email in another case", who{email: "ALICE@EXAMPLE.COM"}, true},
		{"domain", who{email: "bob@corp.example.com"}, true},
		{"domain in another case", who{email: "bob@Corp.Example.Com"}, true},
		{"subdomain", who{email: "bob@eu.corp.example.com"}, false},
		{"parent domain", who{email: "bob@example.com"}, false},
		{"domain as local part", who{email: "corp.example.com@evil.com"}, false},
		{"unverified email (none)", who{email: ""}, false},
		{"look-alike letter", who{email: "\u0430lice@example.com"}, false},
		{"Kelvin sign", who{email: "bob@corp.example.\u212aom"}, false},
		{"zero-width space", who{email: "alice@example.com\u200b"}, false},
		{"idp group", who{groups: []string{"users", "admins"}}, true},
		{"idp group in another case", who{groups: []string{"Admins"}}, false},
		{"headscale group named without prefix in the rule", who{headscaleGroups: []string{"group:ops"}}, true},
		{"headscale group", who{headscaleGroups: []string{"group:dev"}}, true},
		{"idp group named like a headscale group", who{groups: []string{"group:ops", "ops"}}, false},
		{"headscale group named like an idp group", who{headscaleGroups: []string{"admins"}}, false},
		{"headscale user", who{headscaleUser: "carol"}, true},
		{"headscale user in another case", who{headscaleUser: "Carol"}, false},
		{"nobody", who{}, false},
	}
	for _, tt := range tests {
		if got := rules.allows(tt.who); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if !newAccess(AccessConfig{}).allows(who{}) {
		t.Error("no rules: refused, want every proven identity let in")
	}
}

func TestAccessLacks(t *testing.T) {
	for _, tt := range []struct {
		cfg  AccessConfig
		want string
	}{
		{AccessConfig{}, ""},
		{AccessConfig{EmailDomains: []string{"example.com"}}, "an allowed email address"},
		{AccessConfig{Groups: []string{"a"}, HeadscaleGroups: []string{"b"}}, "membership of an allowed group at the identity provider or membership of an allowed Headscale group"},
		{AccessConfig{Emails: []string{"a@b.c"}, Groups: []string{"secret-group"}, HeadscaleUsers: []string{"bob"}}, "an allowed email address, membership of an allowed group at the identity provider or an allowed Headscale user"},
	} {
		got := newAccess(tt.cfg).lacks()
		if got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.cfg, got, tt.want)
		}
		if strings.Contains(got, "secret-group") || strings.Contains(got, "bob") {
			t.Errorf("%q names a rule's value", got)
		}
	}
}

func TestAccessValidate(t *testing.T) {
	errs := AccessConfig{
		Emails:          []string{"alice@example.com", "alice", "@example.com", "a@", "a b@c.d"},
		EmailDomains:    []string{"example.com", "@example.com", "*.example.com", ".example.com", ""},
		Groups:          []string{"ok", ""},
		HeadscaleGroups: []string{"group:", "ok"},
		HeadscaleUsers:  []string{""},
	}.Validate("access")
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	want := []string{
		`access.emails[1]: "alice" is not an email address`,
		`access.emails[2]: "@example.com" is not an email address`,
		`access.emails[3]: "a@" is not an email address`,
		`access.emails[4]: "a b@c.d" is not an email address`,
		`access.email_domains[1]: "@example.com" is not a domain (write example.com, without @ or wildcards)`,
		`access.email_domains[2]: "*.example.com" is not a domain (write example.com, without @ or wildcards)`,
		`access.email_domains[3]: ".example.com" is not a domain (write example.com, without @ or wildcards)`,
		`access.email_domains[4]: "" is not a domain (write example.com, without @ or wildcards)`,
		`access.groups[1]: empty`,
		`access.headscale_groups[0]: empty`,
		`access.headscale_users[0]: empty`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
