package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"headgate/internal/testbed"
)

// policyWithGroups is a Headscale ACL policy with groups as given (name without "group:" to
// members) and one rule Headscale accepts.
func policyWithGroups(groups map[string][]string) string {
	var b strings.Builder
	b.WriteString("{\n  // written by the e2e suite\n  \"groups\": {\n")
	first := true
	for name, members := range groups {
		if !first {
			b.WriteString(",\n")
		}
		first = false
		quoted := make([]string, len(members))
		for i, m := range members {
			quoted[i] = strconv.Quote(m)
		}
		fmt.Fprintf(&b, "    %q: [%s]", "group:"+name, strings.Join(quoted, ", "))
	}
	b.WriteString("\n  },\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}],\n}\n")
	return b.String()
}

// metricValue returns the value of the sample named name (without labels) at the metrics
// endpoint url, and false when it has none.
func metricValue(t *testing.T, url, name string) (float64, bool) {
	t.Helper()
	values, err := testbed.ReadMetrics(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := values[name]
	return v, ok
}

// TestHeadscalePolicyGroups sets ACL policies on the real Headscale through its CLI and
// watches an instance that reads them every second: the groups a person's Headscale user is
// in arrive as X-Headscale-Groups (on the proxy and forward auth), an access rule on a
// Headscale group follows each change of the policy within the refresh (403, then 200, then
// 403 again), and headgate_headscale_policy_age_seconds says how old the groups in force are.
// The stack is its own: a policy is global to Headscale.
func TestHeadscalePolicyGroups(t *testing.T) {
	t.Parallel()
	s := ownStack(t, testbed.Options{MaxGateways: 1})
	ctx := t.Context()
	for _, u := range []testbed.User{testbed.Bob, testbed.Dave} {
		if _, err := s.CreateCLIUser(ctx, u.Username, u.Email); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := testbed.HostPort(ports[0])
	g := startGateway(t, s, testbed.GatewayOptions{Extra: map[string]any{
		"headscale":      map[string]any{"policy_refresh": "1s"},
		"metrics_listen": metricsAddr,
		"routes": []any{map[string]any{
			"path": "/admins", "upstream": s.Upstream.URL,
			"access": map[string]any{"headscale_groups": []string{"admins"}},
		}},
	}})
	metrics := "http://" + metricsAddr + "/metrics"
	const ageMetric = "headgate_headscale_policy_age_seconds"
	eventually(t, "the first read of the policy", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		age, ok := metricValue(t, metrics, ageMetric)
		return ok && age >= 0, fmt.Sprintf("%s %v (present: %v)", ageMetric, age, ok)
	})

	bob := loginCookie(t, g, testbed.Bob, "/bob/login")
	dave := loginCookie(t, g, testbed.Dave, "/dave/login")
	if v := onlyRequest(t, s.Upstream, "/bob/login").Header.Values("X-Headscale-Groups"); len(v) != 0 {
		t.Errorf("bob without a policy: X-Headscale-Groups: got %q, want none", v)
	}
	wantAPIStatus(t, g, "/admins/bob/0", bob, http.StatusForbidden, "bob at /admins without a policy")

	// Bob becomes an admin, by name; Dave is in ops by email.
	set := time.Now()
	if err := s.SetPolicy(ctx, policyWithGroups(map[string][]string{
		"admins": {"bob@"}, "ops": {"dave@example.com", "bob@"},
	})); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, "bob is let in at /admins", 30*time.Second, 100*time.Millisecond,
		statusIs(t, g, "/admins/bob/1", api(bob), http.StatusOK))
	t.Logf("the policy naming bob an admin let him in %s after it was set (%s of polling)",
		time.Since(set).Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	got := s.Upstream.Requests("/admins/bob/1")
	checkHeader(t, "bob at /admins", got[len(got)-1].Header, "X-Headscale-Groups", "group:admins,group:ops")
	page := fetch(t, g, nil, http.MethodGet, "/oauth2/auth", api(bob))
	if page.Status != http.StatusAccepted {
		t.Fatalf("/oauth2/auth for bob: got %d, want 202", page.Status)
	}
	checkHeader(t, "/oauth2/auth for bob", page.Header, "X-Headscale-Groups", "group:admins,group:ops")
	if page := fetch(t, g, nil, http.MethodGet, "/dave/1", api(dave)); page.Status != http.StatusOK {
		t.Fatalf("dave: got %d, want 200", page.Status)
	}
	checkHeader(t, "dave", onlyRequest(t, s.Upstream, "/dave/1").Header, "X-Headscale-Groups", "group:ops")
	wantAPIStatus(t, g, "/admins/dave/1", dave, http.StatusForbidden, "dave at /admins, in ops only")

	// The admins change hands: Bob is out and Dave in, within the refresh.
	set = time.Now()
	if err := s.SetPolicy(ctx, policyWithGroups(map[string][]string{
		"admins": {"dave@example.com"}, "ops": {"bob@"},
	})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob is refused at /admins", 30*time.Second, 100*time.Millisecond,
		statusIs(t, g, "/admins/bob/2", api(bob), http.StatusForbidden))
	t.Logf("the policy without bob among the admins refused him %s after it was set", time.Since(set).Round(10*time.Millisecond))
	wantAPIStatus(t, g, "/admins/dave/2", dave, http.StatusOK, "dave at /admins, now an admin")
	checkHeader(t, "dave at /admins", onlyRequest(t, s.Upstream, "/admins/dave/2").Header, "X-Headscale-Groups", "group:admins")
	wantAPIStatus(t, g, "/admins/bob/3", bob, http.StatusForbidden, "bob at /admins, no longer an admin")
	if n := len(s.Upstream.Requests("/admins/bob/3")); n != 0 {
		t.Errorf("the upstream received %d of bob's requests after he left the admins, want none", n)
	}

	age, ok := metricValue(t, metrics, ageMetric)
	if !ok || age < 0 || age > 10 {
		t.Errorf("%s: got %v (present: %v), want between 0 and 10 seconds with policy_refresh 1s", ageMetric, age, ok)
	}
	t.Logf("%s: %v", ageMetric, age)
}
