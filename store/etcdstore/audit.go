package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/audit"
	"matchbox/store"
)

// auditShift makes room in a record's id for its position in its
// transaction: id = etcd revision of the write << auditShift | position,
// so that ids order records as they were committed, across instances.
const auditShift = 20

// auditBatch is the audit records of one transaction, stored as one key
// audit/<time>-<random> written by the transaction itself (one operation,
// however many records, so that a large catalog write stays within etcd's
// operations per transaction). It is written under the lease of timeline
// events: audit records are kept as long as events (Config.EventRetention).
type auditBatch struct {
	Records []auditRecord `json:"records"`
}

type auditRecord struct {
	At            string `json:"at"`
	Actor         string `json:"actor"`
	Action        string `json:"action"`
	Kind          string `json:"kind"`
	Object        string `json:"object"`
	VersionBefore int64  `json:"version_before,omitempty"`
	VersionAfter  int64  `json:"version_after,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

// auditTimeFormat has a fixed width, so that keys order by time.
const auditTimeFormat = "2006-01-02T15:04:05.000000000Z"

// fill completes records with the context's actor and the current time.
func (s *Store) fill(ctx context.Context, recs []audit.Record) []audit.Record {
	now := s.now().UTC()
	out := make([]audit.Record, len(recs))
	for i, r := range recs {
		if r.Actor == "" {
			r.Actor = audit.Actor(ctx)
		}
		if r.At.IsZero() {
			r.At = now
		}
		out[i] = r
	}
	return out
}

// auditOp is the operation that writes recs in a transaction (under
// lease), or nil when there are none.
func (s *Store) auditOp(recs []audit.Record, lease clientv3.LeaseID) (*clientv3.Op, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	var b auditBatch
	for _, r := range recs {
		b.Records = append(b.Records, auditRecord{At: r.At.UTC().Format(auditTimeFormat), Actor: r.Actor, Action: r.Action,
			Kind: r.Kind, Object: r.Object, VersionBefore: r.VersionBefore, VersionAfter: r.VersionAfter, Detail: r.Detail})
	}
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode audit records: %w", err)
	}
	suffix, err := randomHex(6)
	if err != nil {
		return nil, err
	}
	op := clientv3.OpPut(s.root+"audit/"+recs[0].At.UTC().Format(auditTimeFormat)+"-"+suffix, string(body), clientv3.WithLease(lease))
	return &op, nil
}

// commitAudited commits cmps → ops with the audit records recs (filled
// with the context's actor and now) in the same transaction, and logs the
// records once it succeeded. A lease of audit records that expired meanwhile
// is replaced and the transaction sent again.
func (s *Store) commitAudited(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op, recs []audit.Record) (*clientv3.TxnResponse, error) {
	if len(recs) == 0 {
		return s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	}
	recs = s.fill(ctx, recs)
	var stale clientv3.LeaseID
	for try := 0; ; try++ {
		lease, err := s.eventLease(ctx, stale)
		if err != nil {
			return nil, err
		}
		op, err := s.auditOp(recs, lease)
		if err != nil {
			return nil, err
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(append(ops[:len(ops):len(ops)], *op)...).Commit()
		if err != nil && errors.Is(err, rpctypes.ErrLeaseNotFound) && try == 0 {
			stale = lease
			continue
		}
		if err != nil {
			return nil, err
		}
		if resp.Succeeded {
			for _, r := range recs {
				s.log.InfoContext(ctx, "audit", r.LogAttrs()...)
			}
		}
		return resp, nil
	}
}

// RecordAudit stores records of changes made outside the store in one
// transaction and logs each one.
func (s *Store) RecordAudit(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if _, err := s.commitAudited(ctx, nil, nil, recs); err != nil {
		return fmt.Errorf("record audit: %w", err)
	}
	return nil
}

// Audit returns the audit records f selects, oldest first (in commit
// order).
func (s *Store) Audit(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	resp, err := s.kv.Get(ctx, s.root+"audit/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read audit records: %w", err)
	}
	var out []audit.Record
	for _, kv := range resp.Kvs {
		var b auditBatch
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return nil, fmt.Errorf("decode audit records %s: %w", kv.Key, err)
		}
		for i, r := range b.Records {
			rec := audit.Record{ID: kv.CreateRevision<<auditShift | int64(i), Actor: r.Actor, Action: r.Action, Kind: r.Kind,
				Object: r.Object, VersionBefore: r.VersionBefore, VersionAfter: r.VersionAfter, Detail: r.Detail}
			if rec.At, err = parseAuditTime(r.At); err != nil {
				return nil, fmt.Errorf("decode audit records %s: %w", kv.Key, err)
			}
			if (f.Kind != "" && rec.Kind != f.Kind) || (f.Object != "" && rec.Object != f.Object) ||
				(f.Actor != "" && rec.Actor != f.Actor) || (!f.Since.IsZero() && rec.At.Before(f.Since)) || rec.ID <= f.After {
				continue
			}
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

var _ store.AuditStore = (*Store)(nil)

func parseAuditTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
