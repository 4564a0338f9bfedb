package api

// This file holds the interfaces the API takes its dependencies through:
// the store (catalog, machines) and the lifecycle. Their implementations
// are wired in cmd/matchbox.

import (
	"context"

	"matchbox/bmc"
	"matchbox/dhcp"
	"matchbox/matchbox"
	"matchbox/store"
)

// Store is what the API reads and writes: the catalog and the machines.
// *store.Store implements it; so will any other store (etcd is planned),
// and tests may pass a fake.
type Store interface {
	Catalog
	Machines
}

// Catalog is the catalog as the API uses it: its current snapshot, and
// read or write transactions of objects.
type Catalog interface {
	// Snapshot returns the current catalog.
	Snapshot() *matchbox.Snapshot
	// ViewCatalog runs fn against a read transaction.
	ViewCatalog(ctx context.Context, fn func(c store.CatalogTx) error) error
	// UpdateCatalog runs fn in one write transaction, all or nothing, and
	// returns the resulting snapshot.
	UpdateCatalog(ctx context.Context, fn func(c store.CatalogTx) error) (*matchbox.Snapshot, error)
}

// Machines are the machine records, timelines and inventories as the API
// uses them.
type Machines interface {
	// Machine returns a machine and its version.
	Machine(ctx context.Context, id string) (*matchbox.Machine, int64, error)
	// ListMachines returns the machines f selects.
	ListMachines(ctx context.Context, f store.MachineFilter) ([]*matchbox.Machine, error)
	// LookupMachineByID returns what the in-memory index holds of a
	// machine (inventory included).
	LookupMachineByID(id string) (matchbox.Machine, bool)
	// LookupMachine returns what the in-memory index holds of the machine
	// that has the MAC (normalised) or, without one, the UUID.
	LookupMachine(mac, uuid string) (matchbox.Machine, bool)
	// PutMachine creates or replaces a machine under the precondition
	// ifVersion and returns its new version.
	PutMachine(ctx context.Context, m *matchbox.Machine, ifVersion int64) (int64, error)
	// DeleteMachine removes a machine with its timeline and inventory.
	DeleteMachine(ctx context.Context, id string, ifVersion int64) error
	// Events returns a machine's timeline.
	Events(ctx context.Context, machineID string, f store.EventFilter) ([]matchbox.Event, error)
	// InventoryHistory returns a machine's inventory reports.
	InventoryHistory(ctx context.Context, machineID string) ([]store.InventoryReport, error)
}

// Lifecycle is the machine lifecycle as the API drives it: BMCs and their
// actions. lifecycle.Service implements it.
type Lifecycle interface {
	// SetBMC validates and stores a machine's BMC, sealing its
	// credentials.
	SetBMC(ctx context.Context, machineID string, ep bmc.Endpoint) error
	// BMC returns a machine's BMC without credentials, and whether
	// credentials are stored.
	BMC(ctx context.Context, machineID string) (ep bmc.Endpoint, hasCredentials bool, err error)
	// DeleteBMC removes a machine's BMC.
	DeleteBMC(ctx context.Context, machineID string) error
	// PowerStatus reads a machine's power state.
	PowerStatus(ctx context.Context, machineID string) (bmc.PowerState, error)
	// SetPower runs a power action.
	SetPower(ctx context.Context, machineID string, action bmc.PowerAction) (bmc.Result, error)
	// SetBootDevice sets a machine's boot device.
	SetBootDevice(ctx context.Context, machineID string, opts bmc.BootOptions) (bmc.Result, error)
	// Provision provisions one machine.
	Provision(ctx context.Context, machineID string) (bmc.Result, error)
	// ProvisionAll provisions machines, a bounded number at once.
	ProvisionAll(ctx context.Context, machineIDs []string) []bmc.Outcome
}

// Leases are the DHCP leases as the API reads them. *store.Store
// implements it (it is the allocator's storage).
type Leases interface {
	// LoadLeases returns every stored lease.
	LoadLeases(ctx context.Context) ([]dhcp.Lease, error)
}
