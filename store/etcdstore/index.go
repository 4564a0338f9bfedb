package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/matchbox"
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

// machineIndex maps ids, MACs and UUIDs to machines in memory, for the
// request paths (DHCP, boot endpoints). Entries are immutable: a change
// replaces the machine's entry.
type machineIndex struct {
	mu     sync.RWMutex
	byID   map[string]*matchbox.Machine
	byMAC  map[string]*matchbox.Machine
	byUUID map[string]*matchbox.Machine
	counts map[matchbox.MachineState]int
}

func newMachineIndex() *machineIndex {
	return &machineIndex{
		byID:   map[string]*matchbox.Machine{},
		byMAC:  map[string]*matchbox.Machine{},
		byUUID: map[string]*matchbox.Machine{},
		counts: map[matchbox.MachineState]int{},
	}
}

func (ix *machineIndex) put(m *matchbox.Machine) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(m.ID)
	ix.byID[m.ID] = m
	ix.counts[m.State]++
	for _, mac := range m.MACs {
		ix.byMAC[mac] = m
	}
	if m.UUID != "" {
		ix.byUUID[m.UUID] = m
	}
}

func (ix *machineIndex) remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
}

func (ix *machineIndex) removeLocked(id string) {
	old, ok := ix.byID[id]
	if !ok {
		return
	}
	for _, mac := range old.MACs {
		if ix.byMAC[mac] == old {
			delete(ix.byMAC, mac)
		}
	}
	if old.UUID != "" && ix.byUUID[old.UUID] == old {
		delete(ix.byUUID, old.UUID)
	}
	delete(ix.byID, id)
	if ix.counts[old.State]--; ix.counts[old.State] == 0 {
		delete(ix.counts, old.State)
	}
}

// replaceAll swaps in the machines of a full read.
func (ix *machineIndex) replaceAll(ms []*matchbox.Machine) {
	fresh := newMachineIndex()
	for _, m := range ms {
		fresh.put(m)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.byID, ix.byMAC, ix.byUUID, ix.counts = fresh.byID, fresh.byMAC, fresh.byUUID, fresh.counts
}

func (ix *machineIndex) lookup(mac, uuid string) (matchbox.Machine, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if mac != "" {
		if m, ok := ix.byMAC[mac]; ok {
			return *m, true
		}
	}
	if uuid != "" {
		if m, ok := ix.byUUID[uuid]; ok {
			return *m, true
		}
	}
	return matchbox.Machine{}, false
}

func (ix *machineIndex) byIDLookup(id string) (matchbox.Machine, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	m, ok := ix.byID[id]
	if !ok {
		return matchbox.Machine{}, false
	}
	return *m, true
}

func (ix *machineIndex) countByState() map[matchbox.MachineState]int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[matchbox.MachineState]int, len(ix.counts))
	for st, n := range ix.counts {
		out[st] = n
	}
	return out
}

// indexEntry turns a stored record into an index entry: the machine with
// its inventory.
func indexEntry(value []byte) (*matchbox.Machine, error) {
	var r machineRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, err
	}
	m := r.Machine
	m.Inventory = r.Inventory
	return &m, nil
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
			for _, ev := range wresp.Events {
				id := s.machineIDFromKey(string(ev.Kv.Key))
				if ev.Type == clientv3.EventTypeDelete {
					s.index.remove(id)
					continue
				}
				m, err := indexEntry(ev.Kv.Value)
				if err != nil {
					s.log.Error("undecodable machine ignored", "key", string(ev.Kv.Key), "err", err)
					continue
				}
				s.index.put(m)
			}
			rev = wresp.Header.Revision
			s.machinesApplied.set(rev)
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
		s.index.replaceAll(ms)
		rev = fresh
		s.machinesApplied.set(rev)
	}
}
