// Package machineindex is the in-memory machine index both stores keep for
// the request paths (DHCP, boot endpoints, enrollment): machines by id, MAC
// and UUID, and how many are in each state.
package machineindex

import (
	"sync"

	"matchbox/matchbox"
)

// Index maps ids, MACs and UUIDs to machines. Entries are immutable: a
// change replaces the machine's entry, and a machine handed to Put must not
// be modified afterwards. It is safe for concurrent use.
type Index struct {
	mu     sync.RWMutex
	byID   map[string]*matchbox.Machine
	byMAC  map[string]*matchbox.Machine
	byUUID map[string]*matchbox.Machine
	counts map[matchbox.MachineState]int
}

// New returns an empty index with room for the given numbers of machines,
// MACs and UUIDs before its maps grow (0 for none).
func New(machines, macs, uuids int) *Index {
	return &Index{
		byID:   make(map[string]*matchbox.Machine, machines),
		byMAC:  make(map[string]*matchbox.Machine, macs),
		byUUID: make(map[string]*matchbox.Machine, uuids),
		counts: make(map[matchbox.MachineState]int, 8),
	}
}

// Put adds m, replacing the entry of the machine with its id. m's MACs
// must be normalised and its UUID lower-cased (as the stores keep them).
func (ix *Index) Put(m *matchbox.Machine) {
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

// Remove drops the machine with id, if the index has it.
func (ix *Index) Remove(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
}

func (ix *Index) removeLocked(id string) {
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

// Replace makes ix hold what fresh holds (a full read built into a new
// index); fresh must not be used afterwards.
func (ix *Index) Replace(fresh *Index) {
	fresh.mu.Lock()
	byID, byMAC, byUUID, counts := fresh.byID, fresh.byMAC, fresh.byUUID, fresh.counts
	fresh.mu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.byID, ix.byMAC, ix.byUUID, ix.counts = byID, byMAC, byUUID, counts
}

// Lookup finds a machine by MAC (normalised) or, failing that, by UUID
// (any case). The machine's maps and slices are shared with the index and
// must not be modified.
func (ix *Index) Lookup(mac, uuid string) (matchbox.Machine, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if mac != "" {
		if m, ok := ix.byMAC[mac]; ok {
			return *m, true
		}
	}
	if uuid = matchbox.MachineUUID(uuid); uuid != "" {
		if m, ok := ix.byUUID[uuid]; ok {
			return *m, true
		}
	}
	return matchbox.Machine{}, false
}

// ByID finds a machine by id, as Lookup.
func (ix *Index) ByID(id string) (matchbox.Machine, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	m, ok := ix.byID[id]
	if !ok {
		return matchbox.Machine{}, false
	}
	return *m, true
}

// Len returns how many machines the index holds.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID)
}

// CountByState returns how many machines are in each state.
func (ix *Index) CountByState() map[matchbox.MachineState]int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[matchbox.MachineState]int, len(ix.counts))
	for st, n := range ix.counts {
		out[st] = n
	}
	return out
}
