package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/store"
)

// Instances register under instances/<id>, attached to an etcd lease that
// the instance keeps alive: when it stops (or is killed), etcd drops the
// key within the lease's TTL.

func (s *Store) instanceKey(id string) string { return s.root + "instances/" + id }

// Register announces inst under an etcd lease of ttl (at least 2s) and
// keeps it alive until ctx ends; then the key is revoked. It returns once
// the instance is registered; the keep-alive runs until ctx ends.
func (s *Store) Register(ctx context.Context, inst store.Instance, ttl time.Duration) error {
	if inst.ID == "" {
		return fmt.Errorf("register instance: no id")
	}
	secs := max(int64(ttl/time.Second), 2)
	lease, err := s.cli.Grant(ctx, secs)
	if err != nil {
		return fmt.Errorf("register instance %s: grant a lease: %w", inst.ID, err)
	}
	body, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("register instance %s: %w", inst.ID, err)
	}
	if _, err := s.kv.Put(ctx, s.instanceKey(inst.ID), string(body), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("register instance %s: %w", inst.ID, err)
	}
	go s.keepRegistered(ctx, inst.ID, string(body), lease.ID, secs)
	return nil
}

// keepRegistered keeps the instance's lease alive; when the lease is lost
// (etcd unreachable longer than the TTL) it registers again.
func (s *Store) keepRegistered(ctx context.Context, id, body string, lease clientv3.LeaseID, secs int64) {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		s.cli.Revoke(rctx, lease)
	}()
	for ctx.Err() == nil {
		ch, err := s.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("instance registration lost; registering again", "instance", id, "err", err)
		pause(ctx, time.Second)
		g, err := s.cli.Grant(ctx, secs)
		if err != nil {
			continue
		}
		if _, err := s.kv.Put(ctx, s.instanceKey(id), body, clientv3.WithLease(g.ID)); err != nil {
			continue
		}
		lease = g.ID
	}
}

// Instances returns the registered instances, ordered by id.
func (s *Store) Instances(ctx context.Context) ([]store.Instance, error) {
	resp, err := s.kv.Get(ctx, s.root+"instances/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	out := make([]store.Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var inst store.Instance
		if err := json.Unmarshal(kv.Value, &inst); err != nil {
			s.log.Warn("ignoring undecodable instance", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
