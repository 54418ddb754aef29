package gateway

import (
	"strings"
	"testing"
)

func TestRouteMatch(t *testing.T) {
	def := &route{name: "default"}
	grafana := &route{name: "grafana", host: "grafana.example.com"}
	admin := &route{name: "admin", path: "/admin"}
	adminUsers := &route{name: "admin-users", path: "/admin/users"}
	public := &route{name: "public", path: "/public"}
	table := newRouteTable([]*route{admin, public, grafana, adminUsers}, def)
	names := func(rs []*route) string {
		var n []string
		for _, r := range rs {
			n = append(n, r.name)
		}
		return strings.Join(n, ",")
	}
	tests := []struct {
		host, path, raw string
		want, also      string
	}{
		{"gate.example.com", "/", "/", "default", ""},
		{"gate.example.com", "/admin", "/admin", "admin", ""},
		{"gate.example.com", "/admin/", "/admin/", "admin", ""},
		{"gate.example.com", "/admin/machines", "/admin/machines", "admin", ""},
		{"gate.example.com", "/admin/users/1", "/admin/users/1", "admin-users", "admin"},
		{"gate.example.com", "/administrator", "/administrator", "default", ""},
		{"gate.example.com", "/Admin/machines", "/Admin/machines", "default", "admin"},
		{"gate.example.com", "/public/../admin", "/public/../admin", "admin", "public"},
		{"gate.example.com", "/admin/../public/x", "/admin%2f..%2fpublic/x", "public", "admin"},
		{"gate.example.com", "/public/../admin", "/public%2f..%2fadmin", "admin", "public"},
		{"gate.example.com", "/public/x", "/public/x", "public", ""},
		{"gate.example.com", "/x/admin", "/x/admin", "default", ""},
		{"grafana.example.com", "/", "/", "grafana", ""},
		{"GRAFANA.example.com.:443", "/d/1", "/d/1", "grafana", ""},
		{"grafana.example.com", "/admin", "/admin", "grafana", ""},
		{"grafana.example.com.evil.com", "/", "/", "default", ""},
	}
	for _, tt := range tests {
		chosen, also := table.match(tt.host, tt.path, tt.raw)
		if chosen.name != tt.want || names(also) != tt.also {
			t.Errorf("%s %s (%s): got %s also [%s], want %s also [%s]", tt.host, tt.path, tt.raw, chosen.name, names(also), tt.want, tt.also)
		}
	}
	noDefault := newRouteTable([]*route{grafana}, nil)
	if chosen, _ := noDefault.match("other.example.com", "/", "/"); chosen != nil {
		t.Errorf("no route and no default: got %s, want none", chosen.name)
	}
}

func TestRouteValidate(t *testing.T) {
	c := RouteConfig{
		Host:         "grafana.example.com:443",
		Path:         "/a/../b",
		Upstream:     "ftp://x",
		Unlinked:     "maybe",
		SkipAuth:     []string{"/"},
		SignOutPaths: []string{"/oauth2/sign_out"},
		Headers:      map[string]string{"X-WEBAUTH-USER": "headscale_user", "Bad Name": "email", "Cookie": "email", "X-Role": "password"},
		Access:       AccessConfig{Emails: []string{"nobody"}},
	}
	var got []string
	for _, err := range c.validate("routes[0].") {
		got = append(got, err.Error())
	}
	for _, want := range []string{
		"routes[0].upstream: ",
		`routes[0].host: "grafana.example.com:443" is not a host name`,
		`routes[0].path: must be a plain path`,
		`routes[0].unlinked: must be deny or allow (got "maybe")`,
		`routes[0].skip_auth[0]: "/" would expose`,
		`routes[0].sign_out_paths[0]: must be a plain path outside /oauth2/`,
		`routes[0].headers: "Bad Name" cannot carry an identity`,
		`routes[0].headers: "Cookie" cannot carry an identity`,
		`routes[0].headers.X-Role: must be one of headscale_user, `,
		`routes[0].access.emails[0]: "nobody" is not an email address`,
	} {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, want)
		}
		if !found {
			t.Errorf("no error starting %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 10 {
		t.Errorf("got %d errors, want 10:\n%s", len(got), strings.Join(got, "\n"))
	}
	if errs := (RouteConfig{}).validate(""); len(errs) != 0 {
		t.Errorf("an empty default route: %v", errs)
	}
	if errs := (RouteConfig{}).validate("routes[1]."); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "routes[1].upstream: ") {
		t.Errorf("a route without upstream: %v", errs)
	}
}
