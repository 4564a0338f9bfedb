package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/audit"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// machineRecord is a machine's stored value under machines/<id>: its
// record, its sealed BMC record and its last inventory. Its MACs are also
// keys of their own (macs/<mac> → id), written in the same transactions, so
// that a MAC has one owner across instances.
type machineRecord struct {
	Version   int64               `json:"version"`
	Machine   matchbox.Machine    `json:"machine"`
	BMC       string              `json:"bmc,omitempty"`
	Inventory *hardware.Inventory `json:"inventory,omitempty"`
	// InventorySeq is the sequence number of the newest inventory
	// history entry.
	InventorySeq int64 `json:"inventory_seq,omitempty"`
}

func (r *machineRecord) clone() *machineRecord {
	c := *r
	c.Machine.MACs = slices.Clone(r.Machine.MACs)
	if r.Machine.Labels != nil {
		c.Machine.Labels = make(map[string]string, len(r.Machine.Labels))
		for k, v := range r.Machine.Labels {
			c.Machine.Labels[k] = v
		}
	}
	return &c
}

func (s *Store) machineKey(id string) string      { return s.root + "machines/" + id }
func (s *Store) macKey(mac string) string         { return s.root + "macs/" + mac }
func (s *Store) inventoryPrefix(id string) string { return s.root + "inventory/" + id + "/" }

// machineView is what a machine write reads in one etcd revision: the
// machine (nil when absent) and the owners of the MACs it asked about.
type machineView struct {
	cur    *machineRecord
	modRev int64
	owners map[string]string // MAC → owning machine id, for MACs that have one
	// audit is the records of the write's changes, which a machine
	// update's function adds and the update commits with them.
	audit []audit.Record
}

// audited adds the audit record of a change of the machine to the write.
func (v *machineView) audited(id, action string, before, after int64, detail string) {
	v.audit = append(v.audit, audit.Record{Action: action, Kind: audit.KindMachine, Object: id, VersionBefore: before, VersionAfter: after, Detail: detail})
}

// readMachine reads a machine and the owners of macs at one revision.
func (s *Store) readMachine(ctx context.Context, id string, macs []string) (*machineView, error) {
	ops := []clientv3.Op{clientv3.OpGet(s.machineKey(id))}
	for _, mac := range macs {
		ops = append(ops, clientv3.OpGet(s.macKey(mac)))
	}
	resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read machine %q: %w", id, err)
	}
	v := &machineView{owners: map[string]string{}}
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue
		}
		if i == 0 {
			v.cur = new(machineRecord)
			if err := json.Unmarshal(kvs[0].Value, v.cur); err != nil {
				return nil, fmt.Errorf("decode machine %q: %w", id, err)
			}
			v.modRev = kvs[0].ModRevision
			continue
		}
		v.owners[macs[i-1]] = string(kvs[0].Value)
	}
	return v, nil
}

// errNoWrite, returned by a machine update's function, ends the update
// without writing and without error.
var errNoWrite = errors.New("nothing to write")

// updateMachine runs fn against machine id as stored (and the owners of
// macs) and commits the record it returns, with the extra operations, in
// one etcd transaction on the condition that neither the machine nor any
// MAC it takes changed since the read; a lost race reads again and runs fn
// again. MAC keys follow the record's MACs. It returns once this
// instance's machine index reflects the write.
func (s *Store) updateMachine(ctx context.Context, id string, macs []string, fn func(v *machineView) (next *machineRecord, extra []clientv3.Op, err error)) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, err := s.readMachine(ctx, id, macs)
		if err != nil {
			return err
		}
		next, extra, err := fn(v)
		if errors.Is(err, errNoWrite) {
			return nil
		}
		if err != nil {
			return err
		}
		var had []string
		if v.cur != nil {
			had = v.cur.Machine.MACs
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.machineKey(id)), "=", v.modRev)}
		var ops []clientv3.Op
		for _, mac := range next.Machine.MACs {
			if !slices.Contains(had, mac) {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.macKey(mac)), "=", 0))
				ops = append(ops, clientv3.OpPut(s.macKey(mac), id))
			}
		}
		for _, mac := range had {
			if !slices.Contains(next.Machine.MACs, mac) {
				ops = append(ops, clientv3.OpDelete(s.macKey(mac)))
			}
		}
		body, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode machine %q: %w", id, err)
		}
		ops = append(ops, clientv3.OpPut(s.machineKey(id), string(body)))
		ops = append(ops, extra...)
		resp, err := s.commitAudited(ctx, cmps, ops, v.audit)
		if err != nil {
			return fmt.Errorf("write machine %q: %w", id, err)
		}
		if !resp.Succeeded {
			continue
		}
		s.applyCommitted(resp.Header.Revision, map[string]*matchbox.Machine{id: next.indexEntry()})
		return nil
	}
	return fmt.Errorf("machine %q: write lost to concurrent writes %d times: %w", id, maxAttempts, store.ErrVersionConflict)
}

// Machine returns a machine (without its inventory) and its version.
func (s *Store) Machine(ctx context.Context, id string) (*matchbox.Machine, int64, error) {
	v, err := s.readMachine(ctx, id, nil)
	if err != nil {
		return nil, 0, err
	}
	if v.cur == nil {
		return nil, 0, fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
	}
	m := v.cur.Machine
	return &m, v.cur.Version, nil
}

// MachineIDByMAC returns the id of the machine that owns a MAC address.
func (s *Store) MachineIDByMAC(ctx context.Context, mac string) (string, error) {
	resp, err := s.kv.Get(ctx, s.macKey(mac))
	if err != nil {
		return "", fmt.Errorf("look up MAC %s: %w", mac, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("MAC %s: %w", mac, store.ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

// ListMachines returns the machines f selects, ordered by id.
func (s *Store) ListMachines(ctx context.Context, f store.MachineFilter) ([]*matchbox.Machine, error) {
	pfx := s.root + "machines/"
	start := pfx
	if f.After != "" {
		start = pfx + f.After + "\x00"
	}
	var out []*matchbox.Machine
	for {
		resp, err := s.kv.Get(ctx, start, clientv3.WithRange(clientv3.GetPrefixRangeEnd(pfx)), clientv3.WithLimit(500))
		if err != nil {
			return nil, fmt.Errorf("list machines: %w", err)
		}
		for _, kv := range resp.Kvs {
			var r machineRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("list machines: decode %s: %w", kv.Key, err)
			}
			if f.State != "" && r.Machine.State != f.State {
				continue
			}
			if !labelsMatch(r.Machine.Labels, f.Label) {
				continue
			}
			m := r.Machine
			out = append(out, &m)
			if f.Limit > 0 && len(out) == f.Limit {
				return out, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// normalizeMACs normalises and sorts a machine's MACs.
func normalizeMACs(id string, raw []string) ([]string, error) {
	macs := make([]string, 0, len(raw))
	for _, r := range raw {
		mac, err := matchbox.NormalizeMAC(r)
		if err != nil {
			return nil, fmt.Errorf("machine %q: macs: %w", id, err)
		}
		if !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	sort.Strings(macs)
	return macs, nil
}

// PutMachine creates or replaces a machine's identity, labels and state
// (not its inventory or BMC record) under the precondition ifVersion (0:
// none; -1: must not exist; n: must be at version n). A MAC another
// machine owns is refused with an error wrapping store.ErrExists.
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
	macs, err := normalizeMACs(m.ID, m.MACs)
	if err != nil {
		return 0, err
	}
	m.MACs = macs
	var version int64
	err = s.updateMachine(ctx, m.ID, macs, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		now := s.now().UTC()
		next := &machineRecord{Version: 1}
		switch {
		case v.cur == nil && ifVersion > 0:
			return nil, nil, fmt.Errorf("machine %q: %w", m.ID, store.ErrNotFound)
		case v.cur == nil:
		case ifVersion == -1:
			return nil, nil, fmt.Errorf("machine %q: %w", m.ID, store.ErrExists)
		case ifVersion > 0 && ifVersion != v.cur.Version:
			return nil, nil, fmt.Errorf("machine %q is at version %d, not %d: %w", m.ID, v.cur.Version, ifVersion, store.ErrVersionConflict)
		default:
			next = v.cur.clone()
			next.Version++
		}
		for mac, owner := range v.owners {
			if owner != m.ID {
				return nil, nil, fmt.Errorf("machine %q: MAC %s already belongs to machine %q: %w", m.ID, mac, owner, store.ErrExists)
			}
		}
		created := now
		if v.cur != nil {
			created = v.cur.Machine.CreatedAt
		}
		next.Machine = *m
		next.Machine.Inventory = nil
		next.Machine.MACs = slices.Clone(macs)
		next.Machine.CreatedAt, next.Machine.UpdatedAt = created, now
		// What the machine was served is the boot path's, not the writer's.
		next.Machine.ServedGroup, next.Machine.ServedProfile = "", ""
		if v.cur != nil {
			next.Machine.ServedGroup, next.Machine.ServedProfile = v.cur.Machine.ServedGroup, v.cur.Machine.ServedProfile
		}
		version = next.Version
		if v.cur == nil {
			v.audited(m.ID, audit.ActionCreate, 0, version, "")
		} else {
			v.audited(m.ID, audit.ActionUpdate, v.cur.Version, version, store.MachineChanges(&v.cur.Machine, &next.Machine))
		}
		return next, nil, nil
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// DeleteMachine removes a machine with its MACs, inventory history and
// timeline, in one transaction, under the precondition ifVersion.
func (s *Store) DeleteMachine(ctx context.Context, id string, ifVersion int64) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, err := s.readMachine(ctx, id, nil)
		if err != nil {
			return err
		}
		if v.cur == nil {
			return fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
		}
		if ifVersion > 0 && ifVersion != v.cur.Version {
			return fmt.Errorf("machine %q is at version %d, not %d: %w", id, v.cur.Version, ifVersion, store.ErrVersionConflict)
		}
		ops := []clientv3.Op{
			clientv3.OpDelete(s.machineKey(id)),
			clientv3.OpDelete(s.inventoryPrefix(id), clientv3.WithPrefix()),
			clientv3.OpDelete(s.eventPrefix(id), clientv3.WithPrefix()),
		}
		for _, mac := range v.cur.Machine.MACs {
			ops = append(ops, clientv3.OpDelete(s.macKey(mac)))
		}
		rec := audit.Record{Action: audit.ActionDelete, Kind: audit.KindMachine, Object: id, VersionBefore: v.cur.Version}
		resp, err := s.commitAudited(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.machineKey(id)), "=", v.modRev)}, ops, []audit.Record{rec})
		if err != nil {
			return fmt.Errorf("delete machine %q: %w", id, err)
		}
		if !resp.Succeeded {
			continue
		}
		s.applyCommitted(resp.Header.Revision, map[string]*matchbox.Machine{id: nil})
		return nil
	}
	return fmt.Errorf("delete machine %q: lost to concurrent writes %d times: %w", id, maxAttempts, store.ErrVersionConflict)
}

// EnsureMachine returns the id of the machine that owns mac, creating a
// discovered machine (its id from the MAC, see store.MachineIDFromMAC)
// when the MAC is new. uuid, when given, is recorded on a machine that has
// none. Two instances ensuring one new MAC at once create one machine.
func (s *Store) EnsureMachine(ctx context.Context, mac, uuid string) (id string, created bool, err error) {
	uuid = matchbox.MachineUUID(uuid)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		owner, err := s.MachineIDByMAC(ctx, mac)
		switch {
		case err == nil:
			if uuid == "" {
				return owner, false, nil
			}
			err = s.updateMachine(ctx, owner, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
				if v.cur == nil || v.cur.Machine.UUID != "" {
					return nil, nil, errNoWrite
				}
				next := v.cur.clone()
				next.Machine.UUID, next.Machine.UpdatedAt = uuid, s.now().UTC()
				return next, nil, nil
			})
			return owner, false, err
		case !errors.Is(err, store.ErrNotFound):
			return "", false, err
		}
		id = store.MachineIDFromMAC(mac)
		taken := false
		err = s.updateMachine(ctx, id, []string{mac}, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
			if _, ok := v.owners[mac]; ok {
				taken = true
				return nil, nil, errNoWrite
			}
			now := s.now().UTC()
			if v.cur == nil {
				return &machineRecord{Version: 1, Machine: matchbox.Machine{
					ID: id, UUID: uuid, MACs: []string{mac}, State: matchbox.StateDiscovered, CreatedAt: now, UpdatedAt: now,
				}}, nil, nil
			}
			// The id is taken by a machine declared with other MACs:
			// the MAC joins it.
			next := v.cur.clone()
			next.Machine.MACs = append(next.Machine.MACs, mac)
			sort.Strings(next.Machine.MACs)
			if next.Machine.UUID == "" {
				next.Machine.UUID = uuid
			}
			next.Machine.UpdatedAt = now
			return next, nil, nil
		})
		if err != nil {
			return "", false, err
		}
		if !taken {
			return id, true, nil
		}
		// Another instance took the MAC between the two reads: answer its
		// machine.
	}
	return "", false, fmt.Errorf("MAC %s: lost to concurrent writes %d times: %w", mac, maxAttempts, store.ErrVersionConflict)
}

// SetMachineState moves a machine to state. When from is given, the
// machine must be in one of those states when the write commits, on any
// instance (compare-and-swap on the machine's record), else the error
// wraps store.ErrVersionConflict.
func (s *Store) SetMachineState(ctx context.Context, id string, state matchbox.MachineState, from ...matchbox.MachineState) error {
	if !state.Valid() {
		return fmt.Errorf("machine %q: unknown state %q", id, state)
	}
	return s.updateMachine(ctx, id, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		if v.cur == nil {
			return nil, nil, fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
		}
		if len(from) > 0 && !slices.Contains(from, v.cur.Machine.State) {
			return nil, nil, fmt.Errorf("machine %q is %s, not %v: %w", id, v.cur.Machine.State, from, store.ErrVersionConflict)
		}
		next := v.cur.clone()
		next.Version++
		next.Machine.State, next.Machine.UpdatedAt = state, s.now().UTC()
		v.audited(id, audit.ActionState, v.cur.Version, next.Version, string(v.cur.Machine.State)+" -> "+string(state))
		return next, nil, nil
	})
}

// SetMachineBMC stores a machine's sealed BMC record; "" removes it.
func (s *Store) SetMachineBMC(ctx context.Context, id, record string) error {
	return s.updateMachine(ctx, id, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		if v.cur == nil {
			return nil, nil, fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
		}
		next := v.cur.clone()
		next.Version++
		next.BMC, next.Machine.UpdatedAt = record, s.now().UTC()
		action := audit.ActionBMCSet
		if record == "" {
			action = audit.ActionBMCDelete
		}
		v.audited(id, action, v.cur.Version, next.Version, "")
		return next, nil, nil
	})
}

// SetMachineServed records the group and profile a machine was last
// served, as a successful boot event does: the record's version stays.
func (s *Store) SetMachineServed(ctx context.Context, id, group, profile string) error {
	return s.updateMachine(ctx, id, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		if v.cur == nil {
			return nil, nil, fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
		}
		if v.cur.Machine.ServedGroup == group && v.cur.Machine.ServedProfile == profile {
			return nil, nil, errNoWrite
		}
		next := v.cur.clone()
		next.Machine.ServedGroup, next.Machine.ServedProfile = group, profile
		return next, nil, nil
	})
}

// MachineBMC returns a machine's sealed BMC record, "" when it has none.
func (s *Store) MachineBMC(ctx context.Context, id string) (string, error) {
	v, err := s.readMachine(ctx, id, nil)
	if err != nil {
		return "", err
	}
	if v.cur == nil {
		return "", fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
	}
	return v.cur.BMC, nil
}

// RecordInventory stores a machine's reported inventory as the SQLite
// store does: the machine is created (discovered) when new, takes the
// UUID and serial of the report when it has none and the MACs of its NICs
// that no machine owns; a report whose facts differ from the previous one
// adds a history entry (inventory/<id>/<seq>) in the same transaction.
func (s *Store) RecordInventory(ctx context.Context, machineID string, inv hardware.Inventory) (changed bool, err error) {
	if err := matchbox.ValidateID("machine", machineID); err != nil {
		return false, err
	}
	cmpInv := inv
	cmpInv.CollectedAt = time.Time{}
	cmpBody, err := json.Marshal(cmpInv)
	if err != nil {
		return false, fmt.Errorf("encode inventory of machine %q: %w", machineID, err)
	}
	var macs []string
	for _, nic := range inv.NICs {
		if mac, err := matchbox.NormalizeMAC(nic.MAC); err == nil && !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	err = s.updateMachine(ctx, machineID, macs, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		now := s.now().UTC()
		var next *machineRecord
		if v.cur == nil {
			next = &machineRecord{Machine: matchbox.Machine{ID: machineID, State: matchbox.StateDiscovered, CreatedAt: now}}
		} else {
			next = v.cur.clone()
		}
		changed = true
		if v.cur != nil && v.cur.Inventory != nil {
			old := *v.cur.Inventory
			old.CollectedAt = time.Time{}
			oldBody, _ := json.Marshal(old)
			changed = string(oldBody) != string(cmpBody)
		}
		next.Version++
		invCopy := inv
		next.Inventory = &invCopy
		next.Machine.UpdatedAt = now
		if next.Machine.UUID == "" {
			next.Machine.UUID = matchbox.MachineUUID(inv.System.UUID)
		}
		if next.Machine.Serial == "" {
			next.Machine.Serial = inv.System.Serial
		}
		for _, mac := range macs {
			owner, owned := v.owners[mac]
			switch {
			case !owned:
				next.Machine.MACs = append(next.Machine.MACs, mac)
			case owner != machineID:
				s.log.Warn("inventory names a MAC another machine owns", "machine", machineID, "mac", mac, "owner", owner)
			}
		}
		sort.Strings(next.Machine.MACs)
		var extra []clientv3.Op
		if changed {
			next.InventorySeq++
			body, err := json.Marshal(store.InventoryReport{Seq: next.InventorySeq, ReportedAt: now, Inventory: inv})
			if err != nil {
				return nil, nil, fmt.Errorf("encode inventory of machine %q: %w", machineID, err)
			}
			extra = append(extra, clientv3.OpPut(fmt.Sprintf("%s%012d", s.inventoryPrefix(machineID), next.InventorySeq), string(body)))
		}
		return next, extra, nil
	})
	return changed, err
}

// InventoryHistory returns a machine's inventory reports, oldest first.
func (s *Store) InventoryHistory(ctx context.Context, machineID string) ([]store.InventoryReport, error) {
	resp, err := s.kv.Get(ctx, s.inventoryPrefix(machineID), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read inventory history of machine %q: %w", machineID, err)
	}
	out := make([]store.InventoryReport, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r store.InventoryReport
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Enroll records that a machine matched group: discovered or failed moves
// to ready, another state stays. It returns the resulting state.
func (s *Store) Enroll(ctx context.Context, machineID, group string) (matchbox.MachineState, error) {
	var state matchbox.MachineState
	err := s.updateMachine(ctx, machineID, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		if v.cur == nil {
			return nil, nil, fmt.Errorf("machine %q: %w", machineID, store.ErrNotFound)
		}
		next := v.cur.clone()
		next.Version++
		if st := next.Machine.State; st == matchbox.StateDiscovered || st == matchbox.StateFailed {
			next.Machine.State = matchbox.StateReady
		}
		next.Machine.Group, next.Machine.UpdatedAt = group, s.now().UTC()
		state = next.Machine.State
		var changes []string
		if v.cur.Machine.Group != group {
			changes = append(changes, "group "+v.cur.Machine.Group+" -> "+group)
		}
		if v.cur.Machine.State != state {
			changes = append(changes, "state "+string(v.cur.Machine.State)+" -> "+string(state))
		}
		if len(changes) > 0 { // a repeated boot request: nothing an operator would look for
			v.audited(machineID, audit.ActionUpdate, v.cur.Version, next.Version, "enrolled: "+strings.Join(changes, ", "))
		}
		return next, nil, nil
	})
	if err != nil {
		return "", err
	}
	return state, nil
}

// CountMachinesByState returns how many machines are in each state, from
// the in-memory index.
func (s *Store) CountMachinesByState(context.Context) (map[matchbox.MachineState]int, error) {
	return s.index.CountByState(), nil
}

// LookupMachine finds a machine by MAC or, failing that, by UUID in this
// instance's index (kept from a watch, so it holds what any instance
// wrote). The machine carries its inventory; its maps and slices are
// shared and must not be modified.
func (s *Store) LookupMachine(mac, uuid string) (matchbox.Machine, bool) {
	return s.index.Lookup(mac, uuid)
}

// LookupMachineByID finds a machine by id in memory, as LookupMachine.
func (s *Store) LookupMachineByID(id string) (matchbox.Machine, bool) {
	return s.index.ByID(id)
}

// machineIDFromKey returns the id in a machines/<id> key.
func (s *Store) machineIDFromKey(key string) string {
	return strings.TrimPrefix(key, s.root+"machines/")
}
