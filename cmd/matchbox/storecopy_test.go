package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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

// TestStoreCopyCLI round-trips a populated SQLite database through a real
// 3-member etcd cluster and back with the real binary: the catalog,
// machines, BMC records, inventories, timelines and leases come back as
// they were; a copy into a non-empty destination is refused with exit 2
// and writes nothing, unless --force; a missing source is exit 1.
func TestStoreCopyCLI(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	dir := t.TempDir()
	srcPath, backPath := filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	src, err := store.Open(ctx, store.Config{Path: srcPath})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.UpdateCatalog(ctx, func(c store.CatalogTx) error {
		p := storetest.Profile("p")
		p.Source = "profiles/p.yaml"
		for _, o := range []*store.Object{p, storetest.Profile("q"),
			storetest.Group("g", "p", map[string]string{"mac": "52:54:00:00:00:01"}),
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
	t0 := time.Unix(1_800_000_000, 0).UTC()
	var leases []dhcp.Lease
	for i := range 3 {
		id, mac := fmt.Sprintf("m%d", i), fmt.Sprintf("52:54:00:00:00:%02x", i+1)
		if _, err := src.PutMachine(ctx, &matchbox.Machine{ID: id, MACs: []string{mac}, Labels: map[string]string{"rack": "r1"}, State: matchbox.StateReady}, -1); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if err := src.SetMachineBMC(ctx, id, "sealed-"+id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := src.RecordInventory(ctx, id, hardware.Inventory{Memory: hardware.Memory{Bytes: uint64(i+1) << 30}}); err != nil {
			t.Fatal(err)
		}
		if err := src.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: id, Type: "dhcp.ack", At: t0}, {MachineID: id, Type: "http.ipxe", At: t0.Add(time.Second)}}); err != nil {
			t.Fatal(err)
		}
		l := dhcp.Lease{IP: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 10+i)), MAC: mac, Expires: t0, State: dhcp.LeaseBound}
		if err := src.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: l}}); err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	src.Close()

	var hosts []string
	for _, e := range cluster.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	etcdURL := "etcd://" + strings.Join(hosts, ",") + "/copied"

	code, out, errOut := runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL)
	if code != 0 {
		t.Fatalf("copy sqlite → etcd: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"profiles     2", "groups       1", "generic      1", "machines     3", "bmc-records  2", "inventories  3", "events       6", "leases       3"} {
		if !strings.Contains(out, want) {
			t.Errorf("copy sqlite → etcd prints no %q:\n%s", want, out)
		}
	}
	code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL)
	if code != copyRefused || !strings.Contains(errOut, "not empty") {
		t.Errorf("copy into a non-empty etcd prefix: exit %d, want %d\n%s%s", code, copyRefused, out, errOut)
	}
	if code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+srcPath, "--to", etcdURL, "--force"); code != 0 {
		t.Errorf("copy --force into a non-empty etcd prefix: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "store", "copy", "--from", "sqlite://"+filepath.Join(dir, "missing.db"), "--to", "sqlite://"+filepath.Join(dir, "x.db"))
	if code != copyFailed || !strings.Contains(errOut, "missing.db") {
		t.Errorf("copy from a missing SQLite file: exit %d, want %d\n%s%s", code, copyFailed, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("copy from a missing SQLite file created it")
	}

	if code, out, errOut = runCLI(t, nil, "store", "copy", "--from", etcdURL, "--to", "sqlite://"+backPath); code != 0 {
		t.Fatalf("copy etcd → sqlite: exit %d\n%s%s", code, out, errOut)
	}

	before, err := store.Open(ctx, store.Config{Path: srcPath})
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	after, err := store.Open(ctx, store.Config{Path: backPath})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	type machineState struct {
		Machine *matchbox.Machine
		BMC     string
		Events  []matchbox.Event
	}
	dump := func(s *store.Store) (objs []*store.Object, ms []machineState, ls []dhcp.Lease) {
		s.ViewCatalog(ctx, func(c store.CatalogTx) error {
			for _, k := range matchbox.Kinds() {
				l, _ := c.List(k)
				objs = append(objs, l...)
			}
			return nil
		})
		list, err := s.ListMachines(ctx, store.MachineFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			full, ok := s.LookupMachineByID(m.ID)
			if !ok {
				t.Fatalf("machine %s not in memory", m.ID)
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
			ms = append(ms, machineState{&full, bmc, evs})
		}
		ls, err = s.LoadLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return objs, ms, ls
	}
	o1, m1, l1 := dump(before)
	o2, m2, l2 := dump(after)
	if d := cmp.Diff(o1, o2, cmpopts.IgnoreFields(store.Object{}, "Version")); d != "" {
		t.Errorf("catalog after sqlite → etcd → sqlite (-before +after):\n%s", d)
	}
	if d := cmp.Diff(m1, m2, cmpopts.IgnoreFields(matchbox.Event{}, "ID")); d != "" {
		t.Errorf("machines, BMC records, inventories and timelines after sqlite → etcd → sqlite (-before +after):\n%s", d)
	}
	if d := cmp.Diff(leases, l2, cmpopts.EquateComparable(netip.Addr{})); d != "" || len(l1) != 3 {
		t.Errorf("leases after sqlite → etcd → sqlite (-before +after):\n%s", d)
	}
}
