package testbed

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestReadMetrics reads a registry's exposition: each series without labels by name, whatever
// its type, and none with labels.
func TestReadMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_requests_total"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_streams"})
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_logins_total"}, []string{"result"})
	reg.MustRegister(c, g, v)
	c.Add(3)
	g.Set(42)
	v.WithLabelValues("ok").Inc()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	got, err := ReadMetrics(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got["test_requests_total"] != 3 || got["test_streams"] != 42 {
		t.Errorf("got %v, want test_requests_total 3 and test_streams 42", got)
	}
	if _, ok := got["test_logins_total"]; ok {
		t.Errorf("a labelled series was read as unlabelled: %v", got)
	}
}
