package gateway

import (
	"headgate/linker"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series. Counters on the per-request path are resolved
// once here, not looked up by label on every request.
type metrics struct {
	logins      *prometheus.CounterVec
	auth        *prometheus.CounterVec
	backchannel *prometheus.CounterVec
	// denied holds auth's counter of each refusal, indexed by authResult.
	denied [authResults]prometheus.Counter
	// headplaneLinkRefused counts requests refused by the link guard (see guardLink).
	headplaneLinkRefused prometheus.Counter
	proxied              prometheus.Counter
	storeFailSoft        prometheus.Counter
	upstreamErrors       prometheus.Counter
}

// newMetrics makes the gateway's series and registers them with reg (nil: none), with the age
// of groups' policy when groups is set and the number of streams open.
func newMetrics(reg prometheus.Registerer, groups *linker.PolicyGroups, streams *streamRegistry) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headgate_logins_total",
			Help: "Completed sign-in attempts by result (ok, unlinked, name_shared, bad_identity, bad_state, replayed, idp_refused, code_refused, token_invalid, idp_unavailable, headscale_unavailable, store_unavailable).",
		}, []string{"result"}),
		backchannel: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headgate_backchannel_logouts_total",
			Help: "Back-channel logout requests from the identity provider by result (ok, invalid, replayed, unavailable).",
		}, []string{"result"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headgate_auth_denied_total",
			Help: "Requests refused for lack of a usable identity or of access, by reason (unauthenticated, unlinked, name_shared, bad_identity, headscale_unavailable, not_allowed).",
		}, []string{"reason"}),
		headplaneLinkRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headgate_headplane_link_refused_total",
			Help: "Requests to link a Headplane account to a Headscale user that is not the person's own, refused.",
		}),
		proxied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headgate_proxied_authenticated_total",
			Help: "Requests proxied upstream with a proven identity.",
		}),
		storeFailSoft: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headgate_session_store_fail_soft_total",
			Help: "Requests served on the strength of their cookie while the session store could not answer.",
		}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headgate_upstream_errors_total",
			Help: "Proxied requests answered with 502 or 504 because the upstream failed.",
		}),
	}
	m.denied[authNone] = m.auth.WithLabelValues("unauthenticated")
	m.denied[authUnlinked] = m.auth.WithLabelValues("unlinked")
	m.denied[authNameShared] = m.auth.WithLabelValues("name_shared")
	m.denied[authBadIdentity] = m.auth.WithLabelValues("bad_identity")
	m.denied[authUnavailable] = m.auth.WithLabelValues("headscale_unavailable")
	m.denied[authNotAllowed] = m.auth.WithLabelValues("not_allowed")
	m.denied[authSignInRequired] = m.auth.WithLabelValues("sign_in_required")
	m.denied[authDeviceUnknown] = m.auth.WithLabelValues("device_unknown")
	m.denied[authDeviceUnavailable] = m.auth.WithLabelValues("device_unavailable")
	m.denied[authDeviceTagged] = m.auth.WithLabelValues("device_tagged")
	m.denied[authDeviceExpired] = m.auth.WithLabelValues("device_expired")
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{m.logins, m.backchannel, m.auth, m.headplaneLinkRefused, m.proxied, m.storeFailSoft, m.upstreamErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "headgate_streams",
			Help: "Event streams and upgraded connections (WebSockets) being proxied, each ended when its session ends.",
		}, func() float64 { return float64(streams.count()) }),
	}
	if groups != nil {
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "headgate_headscale_policy_age_seconds",
			Help: "Age of the Headscale policy groups in force (the last successful read of the policy); -1 before the first.",
		}, func() float64 {
			age, ok := groups.Age()
			if !ok {
				return -1
			}
			return age.Seconds()
		}))
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
