package boothttp

import (
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/matchbox"
)

// Metrics are the boot endpoints' Prometheus metrics.
type Metrics struct {
	requests     *prometheus.CounterVec
	matchSeconds prometheus.Histogram
}

// NewMetrics registers the boot endpoint metrics on reg, including gauges of
// the catalog that snapshot returns.
func NewMetrics(reg prometheus.Registerer, snapshot func() *matchbox.Snapshot) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matchbox_http_requests_total",
			Help: "Boot endpoint requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		matchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "matchbox_match_duration_seconds",
			Help:    "Time to select a group for a request.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}),
	}
	count := func(name, help string, pick func(p, g, t int) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			p, g, t := snapshot().Counts()
			return float64(pick(p, g, t))
		})
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.matchSeconds,
		count("matchbox_profiles_loaded", "Profiles in the current catalog.", func(p, _, _ int) int { return p }),
		count("matchbox_groups_loaded", "Groups in the current catalog.", func(_, g, _ int) int { return g }),
		count("matchbox_templates_loaded", "Templates in the current catalog.", func(_, _, t int) int { return t }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "matchbox_catalog_dangling_references",
			Help: "References of the current catalog that name missing objects: groups whose profile, profiles whose ignition or generic template does not exist.",
		}, func() float64 { return float64(len(snapshot().Dangling())) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
	start  time.Time // when the request came
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's ReaderFrom (sendfile) fast path.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
