package etcdstore_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/dhcp"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// TestCopyRoundTrip copies an SQLite store into etcd and back into a new
// SQLite store: the catalog (with sources), machines, BMC records, last
// inventories, timelines and leases come back as they were.
func TestCopyRoundTrip(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	openSQLite := func() *store.Store {
		s, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src := openSQLite()
	_, err := src.UpdateCatalog(ctx, func(c store.CatalogTx) error {
		p := storetest.Profile("p")
		p.Source = "profiles/p.yaml"
		for _, o := range []*store.Object{p, storetest.Group("g", "p", map[string]string{"mac": "52:54:00:00:00:01"}),
			storetest.Template(matchbox.TemplateGeneric, "t", "hello")} {
			if _, err := c.Put(o, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutMachine(ctx, &matchbox.Machine{ID: "m", MACs: []string{"52:54:00:00:00:01"}, Labels: map[string]string{"rack": "r1"}, State: matchbox.StateReady}, -1); err != nil {
		t.Fatal(err)
	}
	if err := src.SetMachineBMC(ctx, "m", "sealed"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.RecordInventory(ctx, "m", hardware.Inventory{Memory: hardware.Memory{Bytes: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0).UTC()
	if err := src.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: "m", Type: "dhcp.ack", At: t0}, {MachineID: "m", Type: "http.ipxe", At: t0.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	lease := dhcp.Lease{IP: netip.MustParseAddr("10.0.0.10"), MAC: "52:54:00:00:00:01", Expires: t0, State: dhcp.LeaseBound}
	if err := src.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: lease}}); err != nil {
		t.Fatal(err)
	}

	mid := open(t, cluster, "copy")
	if _, err := store.Copy(ctx, src, mid); err != nil {
		t.Fatalf("sqlite → etcd: %v", err)
	}
	dst := openSQLite()
	res, err := store.Copy(ctx, mid, dst)
	if err != nil {
		t.Fatalf("etcd → sqlite: %v", err)
	}
	t.Logf("copied back: %+v", res)

	catalog := func(s store.Backend) []*store.Object {
		var out []*store.Object
		s.ViewCatalog(ctx, func(c store.CatalogTx) error {
			for _, k := range matchbox.Kinds() {
				l, _ := c.List(k)
				out = append(out, l...)
			}
			return nil
		})
		return out
	}
	ignore := cmpopts.IgnoreFields(store.Object{}, "Version")
	if d := cmp.Diff(catalog(src), catalog(dst), ignore); d != "" {
		t.Errorf("catalog after a round trip (-before +after):\n%s", d)
	}
	machine := func(s store.Backend) *matchbox.Machine {
		m, _, err := s.Machine(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		m.CreatedAt, m.UpdatedAt = time.Time{}, time.Time{}
		return m
	}
	if d := cmp.Diff(machine(src), machine(dst)); d != "" {
		t.Errorf("machine after a round trip (-before +after):\n%s", d)
	}
	if bmc, _ := dst.MachineBMC(ctx, "m"); bmc != "sealed" {
		t.Errorf("BMC record after a round trip: %q", bmc)
	}
	if m, ok := dst.LookupMachineByID("m"); !ok || m.Inventory == nil || m.Inventory.Memory.Bytes != 1<<30 {
		t.Errorf("inventory after a round trip: %+v", m.Inventory)
	}
	events := func(s store.Backend) []matchbox.Event {
		evs, err := s.Events(ctx, "m", store.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	if d := cmp.Diff(events(src), events(dst), cmpopts.IgnoreFields(matchbox.Event{}, "ID")); d != "" {
		t.Errorf("timeline after a round trip (-before +after):\n%s", d)
	}
	leases, err := dst.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]dhcp.Lease{lease}, leases, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("leases after a round trip (-before +after):\n%s", d)
	}
}
