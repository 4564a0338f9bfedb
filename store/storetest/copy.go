package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/dhcp"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// Populate fills an empty store with one of everything store copy moves:
// profiles p (with a source) and q, group g, generic template t; three
// machines m0..m2 (52:54:00:00:00:01..03, ready, rack r1) with an
// inventory, two timeline events each (the second served m0 group g and
// profile p) and a bound lease 10.0.0.10..12; m0 and m1 have a BMC record.
// It returns the leases it wrote.
func Populate(t *testing.T, s store.Backend) []dhcp.Lease {
	t.Helper()
	ctx := context.Background()
	_, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error {
		p := Profile("p")
		p.Source = "profiles/p.yaml"
		for _, o := range []*store.Object{p, Profile("q"),
			Group("g", "p", map[string]string{"mac": "52:54:00:00:00:01"}),
			Template(matchbox.TemplateGeneric, "t", "hello")} {
			if _, err := c.Put(o, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0).UTC()
	var leases []dhcp.Lease
	for i := range 3 {
		id, mac := fmt.Sprintf("m%d", i), fmt.Sprintf("52:54:00:00:00:%02x", i+1)
		if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: id, MACs: []string{mac}, Labels: map[string]string{"rack": "r1"}, State: matchbox.StateReady}, -1); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if err := s.SetMachineBMC(ctx, id, "sealed-"+id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RecordInventory(ctx, id, hardware.Inventory{Memory: hardware.Memory{Bytes: uint64(i+1) << 30}}); err != nil {
			t.Fatal(err)
		}
		served := matchbox.BootEvent{MachineID: id, Type: matchbox.EventIPXE, At: t0.Add(time.Second)}
		if i == 0 {
			served.Outcome = matchbox.Outcome{Status: 200, Group: "g", Profile: "p"}
		}
		if err := s.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: id, Type: "dhcp.ack", At: t0}, served}); err != nil {
			t.Fatal(err)
		}
		l := dhcp.Lease{IP: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 10+i)), MAC: mac, Expires: t0, State: dhcp.LeaseBound}
		if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: l}}); err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if m, _, err := s.Machine(ctx, "m0"); err != nil || m.ServedGroup != "g" || m.ServedProfile != "p" {
		t.Fatalf("populate: machine m0 was served %+v (%v), want group g, profile p", m, err)
	}
	return leases
}

// Compare fails t unless a and b hold the same catalog (versions aside),
// machines (with what they were last served, their inventory and BMC
// record; versions and times of creation and update aside), timelines
// (event ids aside) and leases.
func Compare(t *testing.T, a, b store.Backend) {
	t.Helper()
	ca, ma, la := dump(t, a)
	cb, mb, lb := dump(t, b)
	if d := cmp.Diff(ca, cb, cmpopts.IgnoreFields(store.Object{}, "Version")); d != "" {
		t.Errorf("catalog (-a +b):\n%s", d)
	}
	if d := cmp.Diff(ma, mb, cmpopts.IgnoreFields(matchbox.Event{}, "ID")); d != "" {
		t.Errorf("machines, BMC records, inventories and timelines (-a +b):\n%s", d)
	}
	if d := cmp.Diff(la, lb, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("leases (-a +b):\n%s", d)
	}
}

// machineDump is what Compare compares of a machine.
type machineDump struct {
	Machine matchbox.Machine
	BMC     string
	Events  []matchbox.Event
}

func dump(t *testing.T, s store.Backend) ([]*store.Object, []machineDump, []dhcp.Lease) {
	t.Helper()
	ctx := context.Background()
	var objs []*store.Object
	err := s.ViewCatalog(ctx, func(c store.CatalogTx) error {
		for _, k := range matchbox.Kinds() {
			l, err := c.List(k)
			if err != nil {
				return err
			}
			objs = append(objs, l...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ms []machineDump
	for _, m := range list {
		full, ok := s.LookupMachineByID(m.ID)
		if !ok {
			t.Fatalf("machine %s is not in memory", m.ID)
		}
		// What the store answers and what it keeps in memory agree.
		if m.ServedGroup != full.ServedGroup || m.ServedProfile != full.ServedProfile {
			t.Errorf("machine %s: served %q/%q in the store, %q/%q in memory", m.ID, m.ServedGroup, m.ServedProfile, full.ServedGroup, full.ServedProfile)
		}
		full.CreatedAt, full.UpdatedAt = time.Time{}, time.Time{}
		bmc, err := s.MachineBMC(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := s.Events(ctx, m.ID, store.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, machineDump{full, bmc, evs})
	}
	leases, err := s.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return objs, ms, leases
}
