package dhcp

import (
	"context"
	"errors"
	"net/netip"

	"matchbox/hardware"
	"matchbox/matchbox"
)

// MachineRecord is a stored machine as the DHCP server reads it (from the
// store's in-memory index).
type MachineRecord struct {
	// Machine is the machine; its IP is not read: Reservations sets it by
	// the rule.
	Machine
	// ReservedIP is the record's ip field as written (10.0.0.5 or
	// 10.0.0.5/24), if any.
	ReservedIP string
	// Inventory is the machine's hardware inventory, for groups that
	// select by facts (may be nil).
	Inventory *hardware.Inventory
}

// Reservations is the MachineLookup of a server: machines from their
// records, with the address reserved for each by the reservation rule.
//
// The rule: a client's reserved address is the ip of its machine record
// (10.0.0.5 or 10.0.0.5/24); without one, the metadata ip (a string) of the
// group selected for the client, when that group selects it by its mac
// label (a group matching on other labels reserves nothing: several
// machines could match it). A client with a reservation and no record is
// still answered as known (with an empty machine ID).
type Reservations struct {
	// Records finds a machine record by MAC (normalised) or UUID.
	Records func(mac, uuid string) (MachineRecord, bool)
	// Catalog returns the current catalog snapshot (nil: no group
	// reserves addresses).
	Catalog func() *matchbox.Snapshot
}

// LookupMachine finds the client's machine and its reserved address.
func (r Reservations) LookupMachine(_ context.Context, mac, uuid string) (Machine, bool) {
	var rec MachineRecord
	ok := false
	if r.Records != nil {
		rec, ok = r.Records(mac, uuid)
	}
	out := rec.Machine
	out.IP, _ = ParseReservedIP(rec.ReservedIP)
	if out.IP.IsValid() || r.Catalog == nil {
		return out, ok
	}
	labels := matchbox.Labels{"mac": mac}
	if uuid != "" {
		labels["uuid"] = uuid
	}
	// A group whose profile is not (yet) written still reserves its address.
	match, err := r.Catalog().Select(labels, rec.Inventory)
	if (err != nil && !errors.Is(err, matchbox.ErrMissingProfile)) || match.Group.Selector["mac"] != mac {
		return out, ok
	}
	if s, isString := match.Group.Metadata["ip"].(string); isString {
		if ip, valid := ParseReservedIP(s); valid {
			out.IP = ip
			return out, true
		}
	}
	return out, ok
}

// ParseReservedIP reads a reserved address written as 10.0.0.5 or
// 10.0.0.5/24; it reports false for anything else (IPv6 included).
func ParseReservedIP(s string) (netip.Addr, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		s = p.Addr().String()
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Is4()
}
