package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"matchbox/hardware"
	"matchbox/matchbox"
)

// MachineSummary is the in-memory view of a machine that request paths read
// (DHCP, boot endpoints) instead of the database.
type MachineSummary struct {
	ID          string
	UUID        string
	IP          string
	State       matchbox.MachineState
	Labels      map[string]string
	PXEDisabled bool
	Inventory   *hardware.Inventory
}

// machineIndex maps MACs and UUIDs to machine summaries. Summaries are
// immutable: a change replaces the machine's summary.
type machineIndex struct {
	mu     sync.RWMutex
	byID   map[string]*MachineSummary
	byMAC  map[string]*MachineSummary
	byUUID map[string]*MachineSummary
	macsOf map[string][]string
}

func newMachineIndex() *machineIndex {
	return &machineIndex{
		byID:   map[string]*MachineSummary{},
		byMAC:  map[string]*MachineSummary{},
		byUUID: map[string]*MachineSummary{},
		macsOf: map[string][]string{},
	}
}

func (ix *machineIndex) put(sum *MachineSummary, macs []string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(sum.ID)
	ix.byID[sum.ID] = sum
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
}

// LookupMachine finds a machine by MAC (normalised) or, failing that, by
// UUID, in memory.
func (s *Store) LookupMachine(mac, uuid string) (MachineSummary, bool) {
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
	return MachineSummary{}, false
}

// MachineSummaryByID returns the in-memory summary of a machine.
func (s *Store) MachineSummaryByID(id string) (MachineSummary, bool) {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	m, ok := s.index.byID[id]
	if !ok {
		return MachineSummary{}, false
	}
	return *m, true
}

// refreshMachine reloads one machine into the index after a committed write.
func (s *Store) refreshMachine(ctx context.Context, id string) error {
	sum, macs, err := loadSummary(ctx, s.write, id)
	if err != nil {
		return err
	}
	if sum == nil {
		s.index.remove(id)
		return nil
	}
	s.index.put(sum, macs)
	return nil
}

func loadSummary(ctx context.Context, q querier, id string) (*MachineSummary, []string, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, uuid, ip, state, labels, pxe_disabled, inventory FROM machines WHERE id = ?", id)
	if err != nil {
		return nil, nil, fmt.Errorf("index machine %q: %w", id, err)
	}
	sums, err := scanSummaries(rows)
	if err != nil || len(sums) == 0 {
		return nil, nil, err
	}
	m := &matchbox.Machine{ID: id}
	if err := loadMACs(ctx, q, m); err != nil {
		return nil, nil, err
	}
	return sums[0], m.MACs, nil
}

func scanSummaries(rows interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}) ([]*MachineSummary, error) {
	defer rows.Close()
	var out []*MachineSummary
	for rows.Next() {
		var sum MachineSummary
		var state, labels, inv string
		var pxeDisabled int
		if err := rows.Scan(&sum.ID, &sum.UUID, &sum.IP, &state, &labels, &pxeDisabled, &inv); err != nil {
			return nil, fmt.Errorf("index machines: %w", err)
		}
		sum.State = matchbox.MachineState(state)
		sum.PXEDisabled = pxeDisabled != 0
		if labels != "" && labels != "{}" && labels != "null" {
			if err := json.Unmarshal([]byte(labels), &sum.Labels); err != nil {
				return nil, fmt.Errorf("index machine %q: labels: %w", sum.ID, err)
			}
		}
		if inv != "" {
			sum.Inventory = new(hardware.Inventory)
			if err := json.Unmarshal([]byte(inv), sum.Inventory); err != nil {
				return nil, fmt.Errorf("index machine %q: inventory: %w", sum.ID, err)
			}
		}
		out = append(out, &sum)
	}
	return out, rows.Err()
}

// loadIndex builds the machine index from the database.
func (s *Store) loadIndex(ctx context.Context) error {
	rows, err := s.read.QueryContext(ctx, "SELECT id, uuid, ip, state, labels, pxe_disabled, inventory FROM machines")
	if err != nil {
		return fmt.Errorf("index machines: %w", err)
	}
	sums, err := scanSummaries(rows)
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
	for _, sum := range sums {
		ix.put(sum, macs[sum.ID])
	}
	s.index = ix
	return nil
}
