package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"matchbox/hardware"
	"matchbox/matchbox"
)

// machineIndex maps ids, MACs and UUIDs to the machines request paths read
// (DHCP, boot endpoints, enrollment) instead of the database. Entries are
// immutable: a change replaces the machine's entry.
type machineIndex struct {
	mu     sync.RWMutex
	byID   map[string]*matchbox.Machine
	byMAC  map[string]*matchbox.Machine
	byUUID map[string]*matchbox.Machine
	macsOf map[string][]string
	// counts holds how many machines are in each state.
	counts map[matchbox.MachineState]int
}

func newMachineIndex() *machineIndex {
	return &machineIndex{
		byID:   map[string]*matchbox.Machine{},
		byMAC:  map[string]*matchbox.Machine{},
		byUUID: map[string]*matchbox.Machine{},
		macsOf: map[string][]string{},
		counts: map[matchbox.MachineState]int{},
	}
}

func (ix *machineIndex) put(sum *matchbox.Machine, macs []string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(sum.ID)
	ix.byID[sum.ID] = sum
	ix.counts[sum.State]++
	for _, mac := range macs {
		ix.byMAC[mac] = sum
	}
	ix.macsOf[sum.ID] = macs
	if sum.UUID != "" {
		ix.byUUID[sum.UUID] = sum
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
	for _, mac := range ix.macsOf[id] {
		if ix.byMAC[mac] == old {
			delete(ix.byMAC, mac)
		}
	}
	if old.UUID != "" && ix.byUUID[old.UUID] == old {
		delete(ix.byUUID, old.UUID)
	}
	delete(ix.macsOf, id)
	delete(ix.byID, id)
	if ix.counts[old.State]--; ix.counts[old.State] == 0 {
		delete(ix.counts, old.State)
	}
}

// LookupMachine finds a machine by MAC (normalised) or, failing that, by
// UUID, in memory. The machine carries its inventory; its maps and slices
// are shared with the index and must not be modified.
func (s *Store) LookupMachine(mac, uuid string) (matchbox.Machine, bool) {
	ix := s.index
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

// LookupMachineByID finds a machine by id in memory, as LookupMachine.
func (s *Store) LookupMachineByID(id string) (matchbox.Machine, bool) {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	m, ok := s.index.byID[id]
	if !ok {
		return matchbox.Machine{}, false
	}
	return *m, true
}

// refreshMachine reloads one machine into the index after a committed write.
func (s *Store) refreshMachine(ctx context.Context, id string) error {
	m, err := loadIndexed(ctx, s.write, id)
	if err != nil {
		return err
	}
	if m == nil {
		s.index.remove(id)
		return nil
	}
	s.index.put(m, m.MACs)
	return nil
}

// indexColumns are the columns of an index entry: the machine's record and
// its inventory.
const indexColumns = machineColumns + ", inventory"

func loadIndexed(ctx context.Context, q querier, id string) (*matchbox.Machine, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+indexColumns+" FROM machines WHERE id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("index machine %q: %w", id, err)
	}
	ms, err := scanIndexed(rows)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	if err := loadMACs(ctx, q, ms[0]); err != nil {
		return nil, err
	}
	return ms[0], nil
}

// withInventory scans a machine row followed by its inventory column.
type withInventory struct {
	r   rowScanner
	inv *string
}

func (w withInventory) Scan(dest ...any) error { return w.r.Scan(append(dest, w.inv)...) }

func scanIndexed(rows interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}) ([]*matchbox.Machine, error) {
	defer rows.Close()
	var out []*matchbox.Machine
	for rows.Next() {
		var inv string
		m, _, err := scanMachine(withInventory{rows, &inv})
		if err != nil {
			return nil, fmt.Errorf("index machines: %w", err)
		}
		if inv != "" {
			m.Inventory = new(hardware.Inventory)
			if err := json.Unmarshal([]byte(inv), m.Inventory); err != nil {
				return nil, fmt.Errorf("index machine %q: inventory: %w", m.ID, err)
			}
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// loadIndex builds the machine index from the database.
func (s *Store) loadIndex(ctx context.Context) error {
	rows, err := s.read.QueryContext(ctx, "SELECT "+indexColumns+" FROM machines")
	if err != nil {
		return fmt.Errorf("index machines: %w", err)
	}
	sums, err := scanIndexed(rows)
	if err != nil {
		return err
	}
	macRows, err := s.read.QueryContext(ctx, "SELECT mac, machine_id FROM machine_macs ORDER BY mac")
	if err != nil {
		return fmt.Errorf("index MACs: %w", err)
	}
	macs := map[string][]string{}
	for macRows.Next() {
		var mac, id string
		if err := macRows.Scan(&mac, &id); err != nil {
			macRows.Close()
			return fmt.Errorf("index MACs: %w", err)
		}
		macs[id] = append(macs[id], mac)
	}
	macRows.Close()
	ix := newMachineIndex()
	for _, m := range sums {
		m.MACs = macs[m.ID]
		ix.put(m, m.MACs)
	}
	s.index = ix
	return nil
}
