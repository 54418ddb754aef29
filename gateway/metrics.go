package gateway

import "github.com/prometheus/client_golang/prometheus"

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

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
			Help: "Requests refused for lack of a usable identity, by reason.",
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
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.logins, m.backchannel, m.auth, m.headplaneLinkRefused, m.proxied, m.storeFailSoft, m.upstreamErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
