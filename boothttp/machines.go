package boothttp

import (
	"context"
	"strings"

	"matchbox/matchbox"
)

// MachineIndex is a store's in-memory machine index (store.Store and
// etcdstore.Store implement it).
type MachineIndex interface {
	LookupMachine(mac, uuid string) (matchbox.Machine, bool)
}

// IndexLookup is the MachineLookup of `matchbox serve`: it looks a
// request's machine up in a store's index, by MAC or by UUID lower-cased
// (the index holds UUIDs lower-cased; firmware sends either case).
type IndexLookup struct {
	Index MachineIndex
}

// LookupMachine implements MachineLookup.
func (l IndexLookup) LookupMachine(_ context.Context, mac, uuid string) (MachineView, bool) {
	m, ok := l.Index.LookupMachine(mac, strings.ToLower(uuid))
	if !ok {
		return MachineView{}, false
	}
	return MachineView{ID: m.ID, State: m.State, Labels: m.Labels, Inventory: m.Inventory}, true
}
