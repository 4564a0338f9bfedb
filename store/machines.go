package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"matchbox/audit"
	"matchbox/matchbox"
)

// machineColumns is the column list every machine query reads.
const machineColumns = "id, uuid, serial, hostname, ip, labels, state, group_id, served_group, served_profile, pxe_disabled, version, created_at, updated_at"

type rowScanner interface{ Scan(dest ...any) error }

func scanMachine(r rowScanner) (*matchbox.Machine, int64, error) {
	var m matchbox.Machine
	var labels, state, created, updated string
	var pxeDisabled int
	var version int64
	if err := r.Scan(&m.ID, &m.UUID, &m.Serial, &m.Hostname, &m.IP, &labels, &state, &m.Group, &m.ServedGroup, &m.ServedProfile, &pxeDisabled, &version, &created, &updated); err != nil {
		return nil, 0, err
	}
	if labels != "" && labels != "{}" {
		if err := json.Unmarshal([]byte(labels), &m.Labels); err != nil {
			return nil, 0, fmt.Errorf("decode labels of machine %q: %w", m.ID, err)
		}
	}
	m.State = matchbox.MachineState(state)
	m.PXEDisabled = pxeDisabled != 0
	m.CreatedAt, m.UpdatedAt = parseTimestamp(created), parseTimestamp(updated)
	return &m, version, nil
}

func loadMACs(ctx context.Context, q querier, m *matchbox.Machine) error {
	rows, err := q.QueryContext(ctx, "SELECT mac FROM machine_macs WHERE machine_id = ? ORDER BY mac", m.ID)
	if err != nil {
		return fmt.Errorf("read MACs of machine %q: %w", m.ID, err)
	}
	defer rows.Close()
	m.MACs = nil
	for rows.Next() {
		var mac string
		if err := rows.Scan(&mac); err != nil {
			return fmt.Errorf("read MACs of machine %q: %w", m.ID, err)
		}
		m.MACs = append(m.MACs, mac)
	}
	return rows.Err()
}

// Machine returns a machine and its version.
func (s *Store) Machine(ctx context.Context, id string) (*matchbox.Machine, int64, error) {
	return getMachine(ctx, s.read, id)
}

func getMachine(ctx context.Context, q querier, id string) (*matchbox.Machine, int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+machineColumns+" FROM machines WHERE id = ?", id)
	if err != nil {
		return nil, 0, fmt.Errorf("read machine %q: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, 0, fmt.Errorf("read machine %q: %w", id, err)
		}
		return nil, 0, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	m, v, err := scanMachine(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("read machine %q: %w", id, err)
	}
	rows.Close()
	if err := loadMACs(ctx, q, m); err != nil {
		return nil, 0, err
	}
	return m, v, nil
}

// MachineIDByMAC returns the id of the machine that owns a MAC address.
func (s *Store) MachineIDByMAC(ctx context.Context, mac string) (string, error) {
	return machineIDByMAC(ctx, s.read, mac)
}

func machineIDByMAC(ctx context.Context, q querier, mac string) (string, error) {
	rows, err := q.QueryContext(ctx, "SELECT machine_id FROM machine_macs WHERE mac = ?", mac)
	if err != nil {
		return "", fmt.Errorf("look up MAC %s: %w", mac, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", fmt.Errorf("MAC %s: %w", mac, ErrNotFound)
	}
	var id string
	if err := rows.Scan(&id); err != nil {
		return "", fmt.Errorf("look up MAC %s: %w", mac, err)
	}
	return id, nil
}

// MachineFilter narrows ListMachines.
type MachineFilter struct {
	State matchbox.MachineState // "" for any
	Label map[string]string     // every label must match
	After string                // ids greater than this (pagination)
	Limit int                   // 0 for no limit
}

// ListMachines returns machines ordered by id.
func (s *Store) ListMachines(ctx context.Context, f MachineFilter) ([]*matchbox.Machine, error) {
	q := "SELECT " + machineColumns + " FROM machines WHERE id > ?"
	args := []any{f.After}
	if f.State != "" {
		q += " AND state = ?"
		args = append(args, string(f.State))
	}
	q += " ORDER BY id"
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	var out []*matchbox.Machine
	for rows.Next() {
		m, _, err := scanMachine(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list machines: %w", err)
		}
		if !labelsMatch(m.Labels, f.Label) {
			continue
		}
		out = append(out, m)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	for _, m := range out {
		if err := loadMACs(ctx, s.read, m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CountMachinesByState returns how many machines are in each state, from
// the in-memory index.
func (s *Store) CountMachinesByState(context.Context) (map[matchbox.MachineState]int, error) {
	return s.index.CountByState(), nil
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// MachineIDFromMAC derives the id given to a machine first seen by its MAC:
// the address with dashes (52-54-00-12-34-56).
func MachineIDFromMAC(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// PutMachine creates or replaces a machine's identity, labels and state
// (not its inventory or BMC). ifVersion as for CatalogTx.Put. MACs are
// normalised; a MAC owned by another machine is refused.
func (s *Store) PutMachine(ctx context.Context, m *matchbox.Machine, ifVersion int64) (int64, error) {
	if err := matchbox.ValidateID("machine", m.ID); err != nil {
		return 0, err
	}
	if m.State == "" {
		m.State = matchbox.StateDiscovered
	}
	if !m.State.Valid() {
		return 0, fmt.Errorf("machine %q: unknown state %q", m.ID, m.State)
	}
	m.UUID = matchbox.MachineUUID(m.UUID)
	macs := make([]string, 0, len(m.MACs))
	for _, raw := range m.MACs {
		mac, err := matchbox.NormalizeMAC(raw)
		if err != nil {
			return 0, fmt.Errorf("machine %q: macs: %w", m.ID, err)
		}
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	m.MACs = macs
	labels, err := json.Marshal(m.Labels)
	if err != nil {
		return 0, fmt.Errorf("machine %q: encode labels: %w", m.ID, err)
	}
	var version int64
	log := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		now := timestamp(s.now())
		old, cur, err := getMachine(ctx, tx, m.ID)
		rec := audit.Record{Action: audit.ActionCreate, Kind: audit.KindMachine, Object: m.ID}
		switch {
		case errors.Is(err, ErrNotFound):
			if ifVersion > 0 {
				return fmt.Errorf("machine %q: %w", m.ID, ErrNotFound)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO machines (id, uuid, serial, hostname, ip, labels, state, group_id, pxe_disabled, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, m.ID, m.UUID, m.Serial, m.Hostname, m.IP, string(labels), string(m.State), m.Group, boolInt(m.PXEDisabled), now, now)
			version = 1
		case err != nil:
			return err
		default:
			if ifVersion == -1 {
				return fmt.Errorf("machine %q: %w", m.ID, ErrExists)
			}
			if ifVersion > 0 && ifVersion != cur {
				return fmt.Errorf("machine %q is at version %d, not %d: %w", m.ID, cur, ifVersion, ErrVersionConflict)
			}
			_, err = tx.ExecContext(ctx, `UPDATE machines SET uuid = ?, serial = ?, hostname = ?, ip = ?, labels = ?, state = ?, group_id = ?, pxe_disabled = ?, version = version + 1, updated_at = ? WHERE id = ?`,
				m.UUID, m.Serial, m.Hostname, m.IP, string(labels), string(m.State), m.Group, boolInt(m.PXEDisabled), now, m.ID)
			version = cur + 1
			rec.Action, rec.VersionBefore, rec.Detail = audit.ActionUpdate, cur, MachineChanges(old, m)
		}
		if err != nil {
			return fmt.Errorf("write machine %q: %w", m.ID, err)
		}
		rec.VersionAfter = version
		if _, err := tx.ExecContext(ctx, "DELETE FROM machine_macs WHERE machine_id = ?", m.ID); err != nil {
			return fmt.Errorf("write MACs of machine %q: %w", m.ID, err)
		}
		for _, mac := range macs {
			if owner, err := machineIDByMAC(ctx, tx, mac); err == nil && owner != m.ID {
				return fmt.Errorf("machine %q: MAC %s already belongs to machine %q: %w", m.ID, mac, owner, ErrExists)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO machine_macs (mac, machine_id) VALUES (?, ?)", mac, m.ID); err != nil {
				return fmt.Errorf("write MAC %s of machine %q: %w", mac, m.ID, err)
			}
		}
		return log.add(ctx, tx, rec)
	})
	if err != nil {
		return 0, err
	}
	s.logAudit(ctx, log)
	return version, s.refreshMachine(ctx, m.ID)
}

// DeleteMachine removes a machine, its MACs, inventory history and events.
func (s *Store) DeleteMachine(ctx context.Context, id string, ifVersion int64) error {
	log := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		q, args := "DELETE FROM machines WHERE id = ?", []any{id}
		if ifVersion > 0 {
			q += " AND version = ?"
			args = append(args, ifVersion)
		}
		var cur int64
		err := tx.QueryRowContext(ctx, q+" RETURNING version", args...).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			if _, _, err := getMachine(ctx, tx, id); err != nil {
				return err
			}
			return fmt.Errorf("machine %q: %w", id, ErrVersionConflict)
		}
		if err != nil {
			return fmt.Errorf("delete machine %q: %w", id, err)
		}
		return log.add(ctx, tx, audit.Record{Action: audit.ActionDelete, Kind: audit.KindMachine, Object: id, VersionBefore: cur})
	})
	if err != nil {
		return err
	}
	s.logAudit(ctx, log)
	s.index.Remove(id)
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ensureMachineTx returns the id of the machine owning mac, creating a
// discovered machine for an unknown MAC. uuid, when given, is recorded on a
// machine that has none.
func ensureMachineTx(ctx context.Context, tx *sql.Tx, mac, uuid, now string) (id string, created bool, err error) {
	e := newEnsurer(ctx, tx)
	defer e.close()
	return e.ensure(mac, uuid, now)
}

// ensurer finds or creates machines by MAC within one transaction, with its
// statements prepared once (a batch of events may create many machines).
type ensurer struct {
	ctx                                 context.Context
	tx                                  *sql.Tx
	lookup, setUUID, insMachine, insMAC *sql.Stmt
	prepErr                             error
}

func newEnsurer(ctx context.Context, tx *sql.Tx) *ensurer { return &ensurer{ctx: ctx, tx: tx} }

func (e *ensurer) prepare() error {
	if e.lookup != nil || e.prepErr != nil {
		return e.prepErr
	}
	stmts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&e.lookup, "SELECT machine_id FROM machine_macs WHERE mac = ?"},
		{&e.setUUID, "UPDATE machines SET uuid = ?, updated_at = ? WHERE id = ? AND uuid = ''"},
		{&e.insMachine, "INSERT INTO machines (id, uuid, state, created_at, updated_at) VALUES (?, ?, 'discovered', ?, ?) ON CONFLICT (id) DO NOTHING"},
		{&e.insMAC, "INSERT INTO machine_macs (mac, machine_id) VALUES (?, ?)"},
	}
	for _, st := range stmts {
		if *st.dst, e.prepErr = e.tx.PrepareContext(e.ctx, st.sql); e.prepErr != nil {
			e.prepErr = fmt.Errorf("prepare machine statements: %w", e.prepErr)
			return e.prepErr
		}
	}
	return nil
}

func (e *ensurer) close() {
	for _, st := range []*sql.Stmt{e.lookup, e.setUUID, e.insMachine, e.insMAC} {
		if st != nil {
			st.Close()
		}
	}
}

// ensure returns the id of the machine owning mac, creating a discovered
// machine for an unknown MAC; uuid, when given, is recorded on a machine
// that has none.
func (e *ensurer) ensure(mac, uuid, now string) (id string, created bool, err error) {
	if err := e.prepare(); err != nil {
		return "", false, err
	}
	uuid = matchbox.MachineUUID(uuid)
	err = e.lookup.QueryRowContext(e.ctx, mac).Scan(&id)
	if err == nil {
		if uuid != "" {
			if _, err := e.setUUID.ExecContext(e.ctx, uuid, now, id); err != nil {
				return "", false, fmt.Errorf("record UUID of machine %q: %w", id, err)
			}
		}
		return id, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", false, fmt.Errorf("look up MAC %s: %w", mac, err)
	}
	id = MachineIDFromMAC(mac)
	if _, err := e.insMachine.ExecContext(e.ctx, id, uuid, now, now); err != nil {
		return "", false, fmt.Errorf("create machine for MAC %s: %w", mac, err)
	}
	if _, err := e.insMAC.ExecContext(e.ctx, mac, id); err != nil {
		return "", false, fmt.Errorf("record MAC %s: %w", mac, err)
	}
	return id, true, nil
}

// EnsureMachine returns the id of the machine that owns mac, creating a
// discovered machine when the MAC is new.
func (s *Store) EnsureMachine(ctx context.Context, mac, uuid string) (id string, created bool, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		id, created, err = ensureMachineTx(ctx, tx, mac, uuid, timestamp(s.now()))
		return err
	})
	if err != nil {
		return "", false, err
	}
	return id, created, s.refreshMachine(ctx, id)
}

// SetMachineState moves a machine to state. When from is not empty, the
// machine must currently be in one of those states.
func (s *Store) SetMachineState(ctx context.Context, id string, state matchbox.MachineState, from ...matchbox.MachineState) error {
	if !state.Valid() {
		return fmt.Errorf("machine %q: unknown state %q", id, state)
	}
	log := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var cur string
		var version int64
		if err := tx.QueryRowContext(ctx, "SELECT state, version FROM machines WHERE id = ?", id).Scan(&cur, &version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("machine %q: %w", id, ErrNotFound)
			}
			return fmt.Errorf("read machine %q: %w", id, err)
		}
		if len(from) > 0 {
			ok := false
			for _, f := range from {
				ok = ok || matchbox.MachineState(cur) == f
			}
			if !ok {
				return fmt.Errorf("machine %q is %s, not %v: %w", id, cur, from, ErrVersionConflict)
			}
		}
		_, err := tx.ExecContext(ctx, "UPDATE machines SET state = ?, version = version + 1, updated_at = ? WHERE id = ?", string(state), timestamp(s.now()), id)
		if err != nil {
			return fmt.Errorf("set state of machine %q: %w", id, err)
		}
		return log.add(ctx, tx, audit.Record{Action: audit.ActionState, Kind: audit.KindMachine, Object: id, VersionBefore: version, VersionAfter: version + 1, Detail: cur + " -> " + string(state)})
	})
	if err != nil {
		return err
	}
	s.logAudit(ctx, log)
	return s.refreshMachine(ctx, id)
}

// SetMachineBMC stores a machine's BMC record (already sealed by the
// caller; the store never sees credentials in clear). An empty record
// removes it.
func (s *Store) SetMachineBMC(ctx context.Context, id, record string) error {
	log := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var version int64
		err := tx.QueryRowContext(ctx, "UPDATE machines SET bmc = ?, version = version + 1, updated_at = ? WHERE id = ? RETURNING version", record, timestamp(s.now()), id).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("machine %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store BMC of machine %q: %w", id, err)
		}
		action := audit.ActionBMCSet
		if record == "" {
			action = audit.ActionBMCDelete
		}
		return log.add(ctx, tx, audit.Record{Action: action, Kind: audit.KindMachine, Object: id, VersionBefore: version - 1, VersionAfter: version})
	})
	if err != nil {
		return err
	}
	s.logAudit(ctx, log)
	return nil
}

// SetMachineServed records the group and profile a machine was last
// served, as a successful boot event does: its version stays.
func (s *Store) SetMachineServed(ctx context.Context, id, group, profile string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE machines SET served_group = ?, served_profile = ? WHERE id = ?", group, profile, id)
		if err != nil {
			return fmt.Errorf("record what machine %q was served: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("record what machine %q was served: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("machine %q: %w", id, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.refreshMachine(ctx, id)
}

// MachineBMC returns a machine's stored BMC record ("" when it has none).
func (s *Store) MachineBMC(ctx context.Context, id string) (string, error) {
	var record string
	err := s.read.QueryRowContext(ctx, "SELECT bmc FROM machines WHERE id = ?", id).Scan(&record)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read BMC of machine %q: %w", id, err)
	}
	return record, nil
}

// machineChanges names the fields a machine write changes, in a few
// words: "labels, state discovered -> ready".
// MachineChanges names the fields a machine write changes, for its audit
// record ("labels, state ready -> provisioning").
func MachineChanges(old, m *matchbox.Machine) string {
	var out []string
	field := func(name string, changed bool) {
		if changed {
			out = append(out, name)
		}
	}
	field("uuid", old.UUID != m.UUID)
	field("serial", old.Serial != m.Serial)
	field("hostname", old.Hostname != m.Hostname)
	field("ip", old.IP != m.IP)
	field("macs", strings.Join(old.MACs, ",") != strings.Join(m.MACs, ","))
	field("labels", !sameLabels(old.Labels, m.Labels))
	field("group", old.Group != m.Group)
	field("pxe_disabled", old.PXEDisabled != m.PXEDisabled)
	if old.State != m.State {
		out = append(out, "state "+string(old.State)+" -> "+string(m.State))
	}
	if len(out) == 0 {
		return "no field changed"
	}
	return strings.Join(out, ", ")
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
