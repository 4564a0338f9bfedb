package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"matchbox/audit"
	"matchbox/hardware"
	"matchbox/matchbox"
)

// InventoryReport is one stored inventory of a machine.
type InventoryReport struct {
	Seq        int64              `json:"seq"`
	ReportedAt time.Time          `json:"reported_at"`
	Inventory  hardware.Inventory `json:"inventory"`
}

// RecordInventory stores a machine's reported inventory, creating the
// machine (state discovered) when it does not exist. The machine's UUID and
// serial are taken from the inventory when it has none, and the MACs of its
// NICs that no other machine owns are added to it. A report equal to the
// previous one (ignoring when it was collected) adds no history entry. It
// returns whether the facts changed.
func (s *Store) RecordInventory(ctx context.Context, machineID string, inv hardware.Inventory) (changed bool, err error) {
	if err := matchbox.ValidateID("machine", machineID); err != nil {
		return false, err
	}
	body, err := json.Marshal(inv)
	if err != nil {
		return false, fmt.Errorf("encode inventory of machine %q: %w", machineID, err)
	}
	cmp := inv
	cmp.CollectedAt = time.Time{}
	cmpBody, _ := json.Marshal(cmp)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		now := timestamp(s.now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO machines (id, state, created_at, updated_at) VALUES (?, 'discovered', ?, ?) ON CONFLICT (id) DO NOTHING`, machineID, now, now); err != nil {
			return fmt.Errorf("create machine %q: %w", machineID, err)
		}
		var prev string
		if err := tx.QueryRowContext(ctx, "SELECT inventory FROM machines WHERE id = ?", machineID).Scan(&prev); err != nil {
			return fmt.Errorf("read machine %q: %w", machineID, err)
		}
		changed = true
		if prev != "" {
			var old hardware.Inventory
			if json.Unmarshal([]byte(prev), &old) == nil {
				old.CollectedAt = time.Time{}
				oldBody, _ := json.Marshal(old)
				changed = string(oldBody) != string(cmpBody)
			}
		}
		uuid := matchbox.MachineUUID(inv.System.UUID)
		if _, err := tx.ExecContext(ctx, `UPDATE machines SET inventory = ?, updated_at = ?,
				uuid = CASE WHEN uuid = '' THEN ? ELSE uuid END,
				serial = CASE WHEN serial = '' THEN ? ELSE serial END,
				version = version + 1
			WHERE id = ?`, string(body), now, uuid, inv.System.Serial, machineID); err != nil {
			return fmt.Errorf("store inventory of machine %q: %w", machineID, err)
		}
		for _, nic := range inv.NICs {
			mac, err := matchbox.NormalizeMAC(nic.MAC)
			if err != nil {
				continue
			}
			owner, err := machineIDByMAC(ctx, tx, mac)
			if errors.Is(err, ErrNotFound) {
				if _, err := tx.ExecContext(ctx, "INSERT INTO machine_macs (mac, machine_id) VALUES (?, ?)", mac, machineID); err != nil {
					return fmt.Errorf("record MAC %s of machine %q: %w", mac, machineID, err)
				}
			} else if err != nil {
				return err
			} else if owner != machineID {
				s.log.Warn("inventory names a MAC another machine owns", "machine", machineID, "mac", mac, "owner", owner)
			}
		}
		if changed {
			if _, err := tx.ExecContext(ctx, `INSERT INTO inventory_history (machine_id, seq, inventory, reported_at)
				VALUES (?, COALESCE((SELECT MAX(seq) FROM inventory_history WHERE machine_id = ?), 0) + 1, ?, ?)`,
				machineID, machineID, string(body), now); err != nil {
				return fmt.Errorf("record inventory history of machine %q: %w", machineID, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return changed, s.refreshMachine(ctx, machineID)
}

// InventoryHistory returns a machine's inventory reports, oldest first.
func (s *Store) InventoryHistory(ctx context.Context, machineID string) ([]InventoryReport, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT seq, inventory, reported_at FROM inventory_history WHERE machine_id = ? ORDER BY seq", machineID)
	if err != nil {
		return nil, fmt.Errorf("read inventory history of machine %q: %w", machineID, err)
	}
	defer rows.Close()
	var out []InventoryReport
	for rows.Next() {
		var r InventoryReport
		var body, at string
		if err := rows.Scan(&r.Seq, &body, &at); err != nil {
			return nil, fmt.Errorf("read inventory history of machine %q: %w", machineID, err)
		}
		if err := json.Unmarshal([]byte(body), &r.Inventory); err != nil {
			return nil, fmt.Errorf("decode inventory %d of machine %q: %w", r.Seq, machineID, err)
		}
		r.ReportedAt = parseTimestamp(at)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Enroll records that a machine matched group: state moves from discovered
// (or failed) to ready and the group is stored. A machine in another state
// keeps it. It returns the resulting state.
func (s *Store) Enroll(ctx context.Context, machineID, group string) (matchbox.MachineState, error) {
	var state string
	log := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var oldGroup string
		var version int64
		if err := tx.QueryRowContext(ctx, "SELECT state, group_id, version FROM machines WHERE id = ?", machineID).Scan(&state, &oldGroup, &version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("machine %q: %w", machineID, ErrNotFound)
			}
			return fmt.Errorf("read machine %q: %w", machineID, err)
		}
		next := state
		if state == string(matchbox.StateDiscovered) || state == string(matchbox.StateFailed) {
			next = string(matchbox.StateReady)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE machines SET group_id = ?, state = ?, version = version + 1, updated_at = ? WHERE id = ?", group, next, timestamp(s.now()), machineID); err != nil {
			return fmt.Errorf("enroll machine %q: %w", machineID, err)
		}
		var changes []string
		if oldGroup != group {
			changes = append(changes, "group "+oldGroup+" -> "+group)
		}
		if next != state {
			changes = append(changes, "state "+state+" -> "+next)
		}
		state = next
		if len(changes) == 0 {
			return nil // a repeated boot request: nothing an operator would look for
		}
		return log.add(ctx, tx, audit.Record{Action: audit.ActionUpdate, Kind: audit.KindMachine, Object: machineID, VersionBefore: version, VersionAfter: version + 1, Detail: "enrolled: " + strings.Join(changes, ", ")})
	})
	if err != nil {
		return "", err
	}
	s.logAudit(ctx, log)
	return matchbox.MachineState(state), s.refreshMachine(ctx, machineID)
}
