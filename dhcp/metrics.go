package dhcp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus counters.
type Metrics struct {
	received *prometheus.CounterVec
	replies  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

// Reasons a packet is dropped.
const (
	dropMalformed = "malformed"
	dropOverload  = "overload"
	dropNotForUs  = "not_for_us"
	dropNoSubnet  = "unknown_subnet"
	dropError     = "error"
	dropIgnored   = "ignored"
)

// NewMetrics creates the counters and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := NewUnregisteredMetrics()
	for _, c := range []prometheus.Collector{m.received, m.replies, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dhcp metrics: %w", err)
		}
	}
	return m, nil
}

// NewUnregisteredMetrics creates counters registered nowhere (tests).
func NewUnregisteredMetrics() *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matchbox_dhcp_received_total", Help: "DHCP requests received, by message type.",
		}, []string{"type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matchbox_dhcp_replies_total", Help: "DHCP replies sent, by message type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matchbox_dhcp_dropped_total", Help: "DHCP packets dropped, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{dropMalformed, dropOverload, dropNotForUs, dropNoSubnet, dropError, dropIgnored} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// Dropped returns the counter of packets dropped for reason (tests).
func (m *Metrics) Dropped(reason string) prometheus.Counter {
	return m.dropped.WithLabelValues(reason)
}
