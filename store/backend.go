package store

import (
	"context"

	"matchbox/dhcp"
	"matchbox/hardware"
	"matchbox/matchbox"
)

// Backend is what a store implementation offers matchbox: the catalog in
// transactions with versions, machines with compare-and-swap versions and
// states, inventories, timelines and the DHCP lease storage. *Store
// (SQLite) implements it; another implementation (etcd) must honour the
// same versions, errors (ErrNotFound, ErrExists, ErrVersionConflict,
// *matchbox.ValidationError, dhcp.ErrAddressTaken) and atomicity, which the
// conformance suite in store/storetest checks for any implementation.
//
// The interfaces api, lifecycle, dhcp and boothttp define for their own
// needs are subsets of it.
type Backend interface {
	CatalogStore

	// Machine returns a machine and its version, or an error wrapping
	// ErrNotFound.
	Machine(ctx context.Context, id string) (*matchbox.Machine, int64, error)
	// MachineIDByMAC returns the id of the machine owning a MAC, or an
	// error wrapping ErrNotFound.
	MachineIDByMAC(ctx context.Context, mac string) (string, error)
	// ListMachines returns the machines f selects, ordered by id.
	ListMachines(ctx context.Context, f MachineFilter) ([]*matchbox.Machine, error)
	// LookupMachine finds a machine by MAC or UUID in memory.
	LookupMachine(mac, uuid string) (matchbox.Machine, bool)
	// LookupMachineByID finds a machine by id in memory.
	LookupMachineByID(id string) (matchbox.Machine, bool)
	// PutMachine creates or replaces a machine under the precondition
	// ifVersion (0: none; -1: must not exist; n: must be at version n).
	PutMachine(ctx context.Context, m *matchbox.Machine, ifVersion int64) (int64, error)
	// DeleteMachine removes a machine with its MACs, timeline and
	// inventory under the precondition ifVersion.
	DeleteMachine(ctx context.Context, id string, ifVersion int64) error
	// EnsureMachine returns the machine owning mac, creating it when new.
	EnsureMachine(ctx context.Context, mac, uuid string) (id string, created bool, err error)
	// SetMachineState moves a machine to state, only from one of from
	// when given (else an error wrapping ErrVersionConflict).
	SetMachineState(ctx context.Context, id string, state matchbox.MachineState, from ...matchbox.MachineState) error
	// SetMachineBMC stores a machine's sealed BMC record ("" removes it).
	SetMachineBMC(ctx context.Context, id, record string) error
	// SetMachineServed records the group and profile a machine was last
	// served (what a successful boot event records; store copy carries it),
	// keeping its version; an error wraps ErrNotFound for no such machine.
	SetMachineServed(ctx context.Context, id, group, profile string) error
	// MachineBMC returns a machine's BMC record, "" when it has none.
	MachineBMC(ctx context.Context, id string) (string, error)

	// RecordInventory stores an inventory report, creating the machine
	// when new, and tells whether the facts changed.
	RecordInventory(ctx context.Context, machineID string, inv hardware.Inventory) (changed bool, err error)
	// InventoryHistory returns a machine's inventory reports, oldest first.
	InventoryHistory(ctx context.Context, machineID string) ([]InventoryReport, error)
	// Enroll records that a machine matched group and returns its state.
	Enroll(ctx context.Context, machineID, group string) (matchbox.MachineState, error)

	// AppendEvents adds events to the timelines of known machines.
	AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error
	// DiscoverAndAppendEvents is AppendEvents creating the machines of
	// events naming an unknown MAC.
	DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error
	// Events returns a machine's timeline, oldest first.
	Events(ctx context.Context, machineID string, f EventFilter) ([]matchbox.Event, error)

	// LeaseStorage keeps the DHCP allocator's leases.
	dhcp.LeaseStorage

	// Ping checks that the store answers.
	Ping(ctx context.Context) error
}

// CatalogStore is the catalog part of a Backend: profiles, groups and
// templates in transactions, and the immutable snapshot of them.
type CatalogStore interface {
	// Snapshot returns the current immutable catalog.
	Snapshot() *matchbox.Snapshot
	// ViewCatalog runs fn against a read transaction of the catalog.
	ViewCatalog(ctx context.Context, fn func(c CatalogTx) error) error
	// UpdateCatalog runs fn in one write transaction and commits only if
	// fn succeeds and the resulting catalog is valid; it returns the new
	// snapshot, which is current when it returns. An implementation may
	// run fn more than once (optimistic transactions retried on a
	// conflict): fn must have no effect but through c.
	UpdateCatalog(ctx context.Context, fn func(c CatalogTx) error) (*matchbox.Snapshot, error)
	// Import writes a data directory's objects in one transaction with
	// scope (the data directory's identity), deleting the objects of that
	// scope that it no longer provides and leaving objects without a
	// source, or of another scope, alone (see ImportObjects).
	Import(ctx context.Context, scope string, objs []*Object) (ImportResult, *matchbox.Snapshot, error)
	// Close releases the store.
	Close() error

	// AuditStore is the audit trail: every catalog write records its
	// changes in it, in the write's transaction, where the store can.
	AuditStore
}

var _ Backend = (*Store)(nil)
