package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/audit"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// Metrics counts lifecycle outcomes for /metrics.
type Metrics struct {
	failures *prometheus.CounterVec
	// signed counts the tokens signed for boot templates, by kind.
	signedAgent, signedProvisioned prometheus.Counter
}

// NewMetrics registers the lifecycle's metrics with reg:
// matchbox_machine_failures_total{reason} and
// matchbox_template_tokens_signed_total{token} (agent, provisioned: the
// HMACs computed for boot templates that name agent_token or
// provisioned_url).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "matchbox_machine_failures_total",
		Help: "Machines marked failed, by reason (provisioning_timeout, provision_boot).",
	}, []string{"reason"})}
	signed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "matchbox_template_tokens_signed_total",
		Help: "Tokens signed for boot templates that name them, by token (agent: agent_token, provisioned: provisioned_url).",
	}, []string{"token"})
	m.signedAgent, m.signedProvisioned = signed.WithLabelValues("agent"), signed.WithLabelValues("provisioned")
	for _, c := range []prometheus.Collector{m.failures, signed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register lifecycle metrics: %w", err)
		}
	}
	return m, nil
}

func (s *Service) countFailure(reason string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.failures.WithLabelValues(reason).Inc()
	}
}

// ReasonTimeout is the reason recorded for a machine that stayed
// provisioning past its profile's provisioning_timeout.
const ReasonTimeout = "provisioning_timeout"

// ExpireProvisioning marks failed every provisioning machine whose
// profile's provisioning_timeout has passed since it entered provisioning
// (its record's last change), recording the reason on its timeline and in
// the metrics. It returns the machines it failed.
func (s *Service) ExpireProvisioning(ctx context.Context, now time.Time) ([]string, error) {
	ctx = audit.WithDefaultActor(ctx, audit.ActorLifecycle)
	from, to := From(TriggerTimeout)
	var failed []string
	for _, state := range from {
		ms, err := s.cfg.Store.ListMachines(ctx, store.MachineFilter{State: state})
		if err != nil {
			return failed, fmt.Errorf("list %s machines: %w", state, err)
		}
		for _, m := range ms {
			p, ok := s.profileOf(m)
			if !ok {
				continue
			}
			deadline := p.Deadline()
			if deadline <= 0 || now.Sub(m.UpdatedAt) < deadline {
				continue
			}
			err := s.cfg.Store.SetMachineState(ctx, m.ID, to, state)
			if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrNotFound) {
				continue // it moved on meanwhile
			}
			if err != nil {
				return failed, fmt.Errorf("mark machine %q failed: %w", m.ID, err)
			}
			s.countFailure(ReasonTimeout)
			s.event(ctx, m.ID, EventFailed, map[string]any{
				"reason": ReasonTimeout, "profile": p.ID, "timeout": p.ProvisioningTimeout,
				"since": m.UpdatedAt.UTC().Format(time.RFC3339),
			})
			s.log.WarnContext(ctx, "machine failed: provisioning timed out", "machine", m.ID, "profile", p.ID, "timeout", p.ProvisioningTimeout, "since", m.UpdatedAt)
			failed = append(failed, m.ID)
		}
	}
	return failed, nil
}

// profileOf returns the profile a machine's network boot selects: its
// enrolled group's when set, else the group its labels, identity and
// inventory select.
func (s *Service) profileOf(m *matchbox.Machine) (*matchbox.Profile, bool) {
	snap := s.cfg.Store.Snapshot()
	if snap == nil {
		return nil, false
	}
	if m.Group != "" {
		if g, ok := snap.Group(m.Group); ok {
			if p, ok := snap.Profile(g.Profile); ok {
				return p, true
			}
		}
	}
	full, ok := s.cfg.Store.LookupMachineByID(m.ID)
	if !ok {
		full = *m
	}
	var inv hardware.Inventory
	if full.Inventory != nil {
		inv = *full.Inventory
	}
	match, err := s.selectFor(full, inv, full.MACs...)
	if err != nil || match.Profile == nil {
		return nil, false
	}
	return match.Profile, true
}

// Run expires provisioning deadlines every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := s.ExpireProvisioning(ctx, now); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "expiring provisioning deadlines failed", "err", err)
			}
		}
	}
}
