package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store/internal/machineindex"
)

// LookupMachine finds a machine by MAC (normalised) or, failing that, by
// UUID, in memory. The machine carries its inventory; its maps and slices
// are shared with the index and must not be modified.
func (s *Store) LookupMachine(mac, uuid string) (matchbox.Machine, bool) {
	return s.index.Lookup(mac, uuid)
}

// LookupMachineByID finds a machine by id in memory, as LookupMachine.
func (s *Store) LookupMachineByID(id string) (matchbox.Machine, bool) {
	return s.index.ByID(id)
}

// refreshMachine reloads one machine into the index after a committed write.
func (s *Store) refreshMachine(ctx context.Context, id string) error {
	rows, err := s.write.QueryContext(ctx, indexQuery+" WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("index machine %q: %w", id, err)
	}
	var m *matchbox.Machine
	err = scanIndexed(rows, 1, func(got *matchbox.Machine) { m = got })
	if err != nil {
		return err
	}
	if m == nil {
		s.index.Remove(id)
		return nil
	}
	s.index.Put(m)
	return nil
}

// indexQuery reads index entries: each machine's record, its inventory
// and its MACs (sorted, comma-separated), in one pass over the machines.
const indexQuery = "SELECT " + machineColumns + ", inventory, " +
	"(SELECT group_concat(mac, ',') FROM (SELECT mac FROM machine_macs WHERE machine_id = machines.id ORDER BY mac)) " +
	"FROM machines"

// indexScanner decodes the rows of indexQuery. Its scan destinations are
// made once for all rows, and machines are allocated in blocks: a load
// allocates little beyond the strings the driver returns.
type indexScanner struct {
	m                               matchbox.Machine
	labels, state, created, updated string
	inv                             string
	macs                            sql.NullString
	pxeDisabled                     int
	version                         int64
	dest                            []any
	block                           []matchbox.Machine
	// blockSize is how many machines are allocated at once (1: each
	// alone).
	blockSize int
}

// machineBlock is how many machines the index's load allocates at once.
// Only the load: a block stays in memory while any machine in it is, so a
// scan of one machine (after a write) allocates it alone, or every new
// machine of a boot storm would hold a block of 256 (175 MiB at 5,000
// new machines).
const machineBlock = 256

// newIndexScanner returns a scanner allocating machines blockSize at a
// time.
func newIndexScanner(blockSize int) *indexScanner {
	sc := &indexScanner{blockSize: max(blockSize, 1)}
	m := &sc.m
	sc.dest = []any{&m.ID, &m.UUID, &m.Serial, &m.Hostname, &m.IP, &sc.labels, &sc.state, &m.Group, &m.ServedGroup, &m.ServedProfile, &sc.pxeDisabled, &sc.version, &sc.created, &sc.updated, &sc.inv, &sc.macs}
	return sc
}

// scan decodes the current row into a new machine.
func (sc *indexScanner) scan(rows *sql.Rows) (*matchbox.Machine, error) {
	sc.m = matchbox.Machine{}
	if err := rows.Scan(sc.dest...); err != nil {
		return nil, err
	}
	if len(sc.block) == 0 {
		sc.block = make([]matchbox.Machine, sc.blockSize)
	}
	m := &sc.block[0]
	sc.block = sc.block[1:]
	*m = sc.m
	if sc.labels != "" && sc.labels != "{}" {
		if err := json.Unmarshal([]byte(sc.labels), &m.Labels); err != nil {
			return nil, fmt.Errorf("decode labels of machine %q: %w", m.ID, err)
		}
	}
	m.State = internState(sc.state)
	m.PXEDisabled = sc.pxeDisabled != 0
	m.CreatedAt, m.UpdatedAt = parseTimestamp(sc.created), parseTimestamp(sc.updated)
	if sc.inv != "" {
		m.Inventory = new(hardware.Inventory)
		if err := json.Unmarshal([]byte(sc.inv), m.Inventory); err != nil {
			return nil, fmt.Errorf("machine %q: inventory: %w", m.ID, err)
		}
	}
	if sc.macs.Valid && sc.macs.String != "" {
		m.MACs = splitMACs(sc.macs.String)
	}
	return m, nil
}

// internState returns the constant of a known state, so that index
// entries do not each keep their own copy of the string.
func internState(s string) matchbox.MachineState {
	for _, st := range []matchbox.MachineState{matchbox.StateDiscovered, matchbox.StateReady, matchbox.StateProvisioning, matchbox.StateProvisioned, matchbox.StateFailed} {
		if string(st) == s {
			return st
		}
	}
	return matchbox.MachineState(s)
}

// scanIndexed decodes the rows of indexQuery and hands each machine to
// put, allocating machines blockSize at a time.
func scanIndexed(rows *sql.Rows, blockSize int, put func(*matchbox.Machine)) error {
	defer rows.Close()
	sc := newIndexScanner(blockSize)
	for rows.Next() {
		m, err := sc.scan(rows)
		if err != nil {
			return fmt.Errorf("index machines: %w", err)
		}
		put(m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("index machines: %w", err)
	}
	return nil
}

// splitMACs splits a comma-separated list of MACs, with one allocation for
// the common single MAC.
func splitMACs(s string) []string {
	if !strings.Contains(s, ",") {
		return []string{s}
	}
	return strings.Split(s, ",")
}

// loadIndex builds the machine index from the database: its maps sized
// from counts first, then filled by one streaming query.
func (s *Store) loadIndex(ctx context.Context) error {
	var machines, macs, uuids int
	err := s.read.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM machines), (SELECT count(*) FROM machine_macs), (SELECT count(*) FROM machines WHERE uuid != '')").Scan(&machines, &macs, &uuids)
	if err != nil {
		return fmt.Errorf("count machines: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, indexQuery)
	if err != nil {
		return fmt.Errorf("index machines: %w", err)
	}
	ix := machineindex.New(machines, macs, uuids)
	if err := scanIndexed(rows, machineBlock, ix.Put); err != nil {
		return err
	}
	s.index = ix
	return nil
}
