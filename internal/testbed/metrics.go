package testbed

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ReadMetrics reads the Prometheus text exposition at url and returns the value of each series
// without labels (a counter, gauge or untyped sample), by name.
func ReadMetrics(ctx context.Context, url string) (map[string]float64, error) {
	page, err := Fetch(ctx, nil, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if page.Status != http.StatusOK {
		return nil, fmt.Errorf("read metrics: GET %s answered %d", url, page.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(page.Body))
	if err != nil {
		return nil, fmt.Errorf("read metrics at %s: %w", url, err)
	}
	values := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				values[name] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				values[name] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				values[name] = m.GetUntyped().GetValue()
			}
		}
	}
	return values, nil
}
