package lifecycle

import (
	"context"

	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// Store is what the lifecycle reads and writes: machines, their states,
// BMCs, inventories and timelines, and the catalog snapshot that selects
// their groups. *store.Store implements it; so will any other store (etcd
// is planned), and tests may pass a fake.
type Store interface {
	// Snapshot returns the current catalog.
	Snapshot() *matchbox.Snapshot
	// LookupMachineByID returns what the in-memory index holds of a
	// machine.
	LookupMachineByID(id string) (matchbox.Machine, bool)
	// ListMachines returns the machines f selects (without inventory).
	ListMachines(ctx context.Context, f store.MachineFilter) ([]*matchbox.Machine, error)
	// SetMachineState moves a machine to state, only from one of from
	// when given (else an error wrapping store.ErrVersionConflict).
	SetMachineState(ctx context.Context, id string, state matchbox.MachineState, from ...matchbox.MachineState) error
	// SetMachineBMC stores a machine's BMC record ("" removes it).
	SetMachineBMC(ctx context.Context, id, record string) error
	// MachineBMC returns a machine's BMC record, "" when it has none.
	MachineBMC(ctx context.Context, id string) (string, error)
	// RecordInventory stores a machine's inventory report, creating the
	// machine when it is new, and tells whether the inventory changed.
	RecordInventory(ctx context.Context, machineID string, inv hardware.Inventory) (changed bool, err error)
	// Enroll records that a machine matched group and returns its state.
	Enroll(ctx context.Context, machineID, group string) (matchbox.MachineState, error)
	// AppendEvents adds events to machine timelines.
	AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error
}
