package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/store"
)

// healthProbeInterval is how often a degraded store is probed for
// recovery.
const healthProbeInterval = time.Second

// healthReporter is a store that tracks its write health (store.Health)
// and can probe it with a small write.
type healthReporter interface {
	Health() *store.Health
	Probe(ctx context.Context) error
}

// watchStoreHealth wires a store's write health to the log (one line per
// change), the matchbox_store_degraded gauge and a background probe that
// notices recovery without a restart. It returns the Health, or nil when
// the store does not track one.
func (s *services) watchStoreHealth(st any, log *slog.Logger) (*store.Health, error) {
	hr, ok := st.(healthReporter)
	if !ok {
		return nil, nil
	}
	h := hr.Health()
	s.recovered = make(chan struct{}, 1)
	degraded := func(hs store.HealthState) {
		log.Warn("store degraded: writes fail; boot endpoints and TFTP serve the in-memory catalog, DHCP offers no new address", "reason", hs.Reason, "cause", hs.Cause)
	}
	h.OnChange(func(hs store.HealthState) {
		if hs.Degraded() {
			degraded(hs)
			return
		}
		log.Info("store recovered: writes succeed again")
		select {
		case s.recovered <- struct{}{}:
		default:
		}
	})
	if hs := h.State(); hs.Degraded() {
		degraded(hs) // since opening the store
	}
	for _, reason := range store.Reasons {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "matchbox_store_degraded",
			Help:        "1 while the store cannot take writes, by reason (storage_full, storage_unavailable); 0 otherwise.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 {
			if h.State().Reason == reason {
				return 1
			}
			return 0
		})
		if err := s.registry.Register(g); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	s.tasks = append(s.tasks, func(ctx context.Context) error {
		h.Run(ctx, healthProbeInterval, hr.Probe)
		return nil
	})
	return h, nil
}

// healthz answers "ok" when the store answers and takes writes, "degraded:
// REASON since TIME: CAUSE" (still 200: boots are served, a restart would
// not help) when it cannot write or cannot be reached (etcd lost: the
// instance serves from its last snapshot), and 503 when it fails
// otherwise.
func (s *services) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// A store known degraded is not asked again: etcd out of reach would
	// hold every health check for the ping's timeout.
	if s.health == nil || !s.health.State().Degraded() {
		if err := s.store.Ping(ctx); err != nil {
			if s.health == nil || store.Reason(err) == "" {
				http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			s.health.Observe(err)
		}
	}
	if s.health != nil {
		if hs := s.health.State(); hs.Degraded() {
			w.Header().Set("X-Matchbox-Degraded", hs.Reason)
			fmt.Fprintf(w, "degraded: %s since %s: %s\n", hs.Reason, hs.Since.UTC().Format(time.RFC3339), hs.Cause)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// retryImport returns a task that runs imp, the data-directory import that
// the storage could not write at start, each time the store recovers,
// until it is written or fails for another reason.
func (s *services) retryImport(imp func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			if s.health.State().Degraded() {
				select {
				case <-ctx.Done():
					return nil
				case <-s.recovered:
				}
			}
			err := imp(ctx)
			switch {
			case err == nil:
				s.log.Info("data directory imported: the store takes writes again", "dir", s.opts.dataDir)
				return nil
			case ctx.Err() != nil:
				return nil
			case store.Reason(err) == "":
				s.log.Error("data directory import failed once the store took writes again; serving the catalog the database holds", "dir", s.opts.dataDir, "err", err)
				return nil
			}
			s.log.Warn("data directory import still cannot be written; retried when the store recovers", "dir", s.opts.dataDir, "reason", store.Reason(err), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-s.recovered:
			}
		}
	}
}
