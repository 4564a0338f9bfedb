package dhcp

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus counters and latency histograms.
type Metrics struct {
	received *prometheus.CounterVec
	replies  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	// reply is the time from a request read to its reply sent, by reply
	// type: what a client waits for, the lease commit of an ACK included.
	reply *prometheus.HistogramVec
	// leaseWait is how long a lease write waits in the writer's queue
	// before its batch is committed; leaseCommit how long a batch's commit
	// takes (the storage's wait for its write connection and the fsync
	// included); leaseBatch how many writes a commit carries.
	leaseWait   prometheus.Histogram
	leaseCommit prometheus.Histogram
	leaseBatch  prometheus.Histogram
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

// latencyBuckets span a fast ACK (a fraction of a millisecond) to a client
// about to give up (seconds).
var latencyBuckets = []float64{.0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}

// NewMetrics creates the counters and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := NewUnregisteredMetrics()
	for _, c := range []prometheus.Collector{m.received, m.replies, m.dropped, m.reply, m.leaseWait, m.leaseCommit, m.leaseBatch} {
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
		reply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "matchbox_dhcp_reply_seconds",
			Help:    "Time from a DHCP request read to its reply sent, by reply type (an ACK includes its lease commit).",
			Buckets: latencyBuckets,
		}, []string{"type"}),
		leaseWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "matchbox_dhcp_lease_queue_seconds",
			Help:    "Time a lease write waits in the lease writer's queue before its batch's commit starts.",
			Buckets: latencyBuckets,
		}),
		leaseCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "matchbox_dhcp_lease_commit_seconds",
			Help:    "Time one commit of a batch of lease writes takes, the wait for the storage's write connection included.",
			Buckets: latencyBuckets,
		}),
		leaseBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "matchbox_dhcp_lease_batch_writes",
			Help:    "Lease writes committed together in one transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
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

// observeCommit records a lease batch: its writes' queueing (from when
// each was queued to start) and the commit's duration.
func (m *Metrics) observeCommit(queued []time.Time, start time.Time, took time.Duration) {
	if m == nil {
		return
	}
	for _, q := range queued {
		m.leaseWait.Observe(start.Sub(q).Seconds())
	}
	m.leaseCommit.Observe(took.Seconds())
	m.leaseBatch.Observe(float64(len(queued)))
}
