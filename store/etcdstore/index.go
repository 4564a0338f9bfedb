package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/matchbox"
	"matchbox/store/internal/machineindex"
)

// applied tracks the etcd revision a watch has applied, for writers that
// wait until their own write is visible in memory.
type applied struct {
	mu      sync.Mutex
	rev     int64
	changed chan struct{} // closed and replaced when rev moves
}

func newApplied(rev int64) *applied { return &applied{rev: rev, changed: make(chan struct{})} }

func (a *applied) set(rev int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev > a.rev {
		a.rev = rev
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

// wait waits until the watch applied revision rev.
func (a *applied) wait(ctx context.Context, rev int64) error {
	for {
		a.mu.Lock()
		cur, ch := a.rev, a.changed
		a.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// current returns the revision applied.
func (a *applied) current() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rev
}

// aheadWrite is a machine write this instance committed and applied to
// its index before the watch brought it back: the record (nil for a
// delete) at the revision of its commit.
type aheadWrite struct {
	rev int64
	m   *matchbox.Machine
}

// ahead holds the writes applied to the index ahead of the watch, so that
// the watch does not put back, for a while, an older record of a machine
// this instance wrote (read your writes), and a full reread does not drop
// them. Its lock also orders the watch's updates of the index against
// the writers'.
type ahead struct {
	mu     sync.Mutex
	writes map[string]aheadWrite // by machine id
}

// applyCommitted applies to the index the machine records (nil: deleted)
// that this instance committed at revision rev, without waiting for the
// watch: the writer's answer needs only its own write indexed. A write
// the watch applied already (or overtook) is left as the watch has it.
func (s *Store) applyCommitted(rev int64, recs map[string]*matchbox.Machine) {
	s.ahead.mu.Lock()
	defer s.ahead.mu.Unlock()
	if s.machinesApplied.current() >= rev {
		return
	}
	for id, m := range recs {
		if w, ok := s.ahead.writes[id]; ok && w.rev > rev {
			continue
		}
		s.ahead.writes[id] = aheadWrite{rev: rev, m: m}
		if m == nil {
			s.index.Remove(id)
		} else {
			s.index.Put(m)
		}
	}
}

// applyWatched applies one watched change of machine id at revision
// modRev, unless this instance applied a later write of it already.
// ahead.mu is held.
func (s *Store) applyWatchedLocked(id string, modRev int64, m *matchbox.Machine) {
	if w, ok := s.ahead.writes[id]; ok && modRev < w.rev {
		return
	}
	if m == nil {
		s.index.Remove(id)
	} else {
		s.index.Put(m)
	}
}

// watchedUpToLocked records that the index reflects revision rev: the
// writes ahead of it that it reached are the watch's from now on.
// ahead.mu is held.
func (s *Store) watchedUpToLocked(rev int64) {
	for id, w := range s.ahead.writes {
		if w.rev <= rev {
			delete(s.ahead.writes, id)
		}
	}
	s.machinesApplied.set(rev)
}

// newIndex builds a machine index of the machines of a full read.
func newIndex(ms []*matchbox.Machine) *machineindex.Index {
	macs, uuids := 0, 0
	for _, m := range ms {
		macs += len(m.MACs)
		if m.UUID != "" {
			uuids++
		}
	}
	ix := machineindex.New(len(ms), macs, uuids)
	for _, m := range ms {
		ix.Put(m)
	}
	return ix
}

// indexEntry turns a stored record into an index entry: the machine with
// its inventory.
func indexEntry(value []byte) (*matchbox.Machine, error) {
	var r machineRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, err
	}
	return r.indexEntry(), nil
}

// indexEntry is the machine index's entry of a record, sharing nothing
// with it but the inventory (which is replaced, never changed).
func (r *machineRecord) indexEntry() *matchbox.Machine {
	m := r.clone().Machine
	m.Inventory = r.Inventory
	return &m
}

// loadMachines reads every machine and returns them with the revision of
// the read.
func (s *Store) loadMachines(ctx context.Context) ([]*matchbox.Machine, int64, error) {
	pfx := s.root + "machines/"
	resp, err := s.kv.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read machines: %w", err)
	}
	ms := make([]*matchbox.Machine, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, err := indexEntry(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		ms = append(ms, m)
	}
	return ms, resp.Header.Revision, nil
}

// watchMachines keeps the machine index from a watch of machines/,
// starting after revision rev; when the watch breaks (compaction, lost
// leader) it reads every machine again and resumes from there.
func (s *Store) watchMachines(ctx context.Context, rev int64) {
	defer close(s.machinesDone)
	pfx := s.root + "machines/"
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), pfx, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		for wresp := range wch {
			if err := wresp.Err(); err != nil {
				s.log.Warn("machine watch interrupted; reading the machines again", "err", err)
				break
			}
			s.ahead.mu.Lock()
			for _, ev := range wresp.Events {
				id := s.machineIDFromKey(string(ev.Kv.Key))
				if ev.Type == clientv3.EventTypeDelete {
					s.applyWatchedLocked(id, ev.Kv.ModRevision, nil)
					continue
				}
				m, err := indexEntry(ev.Kv.Value)
				if err != nil {
					s.log.Error("undecodable machine ignored", "key", string(ev.Kv.Key), "err", err)
					continue
				}
				s.applyWatchedLocked(id, ev.Kv.ModRevision, m)
			}
			rev = wresp.Header.Revision
			s.watchedUpToLocked(rev)
			s.ahead.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		ms, fresh, err := s.loadMachines(ctx)
		if err != nil {
			s.log.Warn("reading the machines again failed", "err", err)
			pause(ctx, time.Second)
			continue
		}
		s.ahead.mu.Lock()
		ix := newIndex(ms)
		for id, w := range s.ahead.writes {
			if w.rev <= fresh {
				continue
			}
			if w.m == nil {
				ix.Remove(id)
			} else {
				ix.Put(w.m)
			}
		}
		s.index.Replace(ix)
		rev = fresh
		s.watchedUpToLocked(rev)
		s.ahead.mu.Unlock()
	}
}
