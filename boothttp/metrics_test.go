package boothttp

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/matchbox"
)

// TestCatalogGauges: the catalog gauges follow the current snapshot,
// dangling references included.
func TestCatalogGauges(t *testing.T) {
	snap, err := matchbox.Build(testCatalog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg, func() *matchbox.Snapshot { return snap }); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if len(f.GetMetric()) == 1 && f.GetMetric()[0].GetGauge() != nil {
			got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	p, g, tm := snap.Counts()
	want := map[string]float64{
		"matchbox_profiles_loaded":             float64(p),
		"matchbox_groups_loaded":               float64(g),
		"matchbox_templates_loaded":            float64(tm),
		"matchbox_catalog_dangling_references": 3, // orphan's profile, dangling's two templates
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}
