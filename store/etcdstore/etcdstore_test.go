package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/etcdstore"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// TestCatalogConformance runs the catalog part of the store conformance
// suite against a real 3-member etcd cluster, each store under its own
// prefix.
func TestCatalogConformance(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	cli := cluster.Client(t)
	var n atomic.Int64
	storetest.RunCatalog(t, func(t *testing.T) store.CatalogStore {
		s, err := etcdstore.Open(context.Background(), etcdstore.Config{Client: cli, Prefix: fmt.Sprintf("conformance-%d", n.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// revisionOf returns a function reading etcd's current revision through
// cli: each write transaction moves it by one.
func revisionOf(t *testing.T, cli *clientv3.Client) func() int64 {
	return func() int64 {
		t.Helper()
		resp, err := cli.Get(context.Background(), "/revision")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
}

func open(t *testing.T, cluster *etcdtest.Cluster, prefix string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Client: cluster.Client(t), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCatalogAcrossInstances: a write acknowledged by one instance is in
// every other instance's snapshot within 1 s (the p50 and p99 of the delay
// are logged); writes of two instances at once serialise, none lost; a
// new instance starts from what is stored.
func TestCatalogAcrossInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	a, b := open(t, cluster, "site"), open(t, cluster, "site")

	const writes = 50
	var delays []time.Duration
	for i := range writes {
		id := fmt.Sprintf("p%d", i)
		if _, err := a.UpdateCatalog(ctx, func(c store.CatalogTx) error { _, err := c.Put(storetest.Profile(id), -1); return err }); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		for {
			if _, ok := b.Snapshot().Profile(id); ok {
				break
			}
			if time.Since(acked) > time.Second {
				t.Fatalf("profile %s written through one instance not served by the other within 1s", id)
			}
			time.Sleep(200 * time.Microsecond)
		}
		delays = append(delays, time.Since(acked))
	}
	slices.Sort(delays)
	t.Logf("write acknowledged → served by the other instance: p50 %v, p99 %v, max %v over %d writes",
		delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1], writes)

	// Read-modify-write from both instances at once: each increments the
	// version of one profile under its current version.
	if _, err := a.UpdateCatalog(ctx, func(c store.CatalogTx) error { _, err := c.Put(storetest.Profile("counter"), -1); return err }); err != nil {
		t.Fatal(err)
	}
	const each = 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, s := range []*etcdstore.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error {
					o, err := c.Get(matchbox.KindProfile, "counter")
					if err != nil {
						return err
					}
					_, err = c.Put(o, o.Version)
					return err
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	err := b.ViewCatalog(ctx, func(c store.CatalogTx) error {
		o, err := c.Get(matchbox.KindProfile, "counter")
		if err != nil {
			return err
		}
		if o.Version != 1+2*each {
			t.Errorf("counter at version %d after %d increments: writes were lost", o.Version, 2*each)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A refused write through one instance changes no instance.
	before := b.Snapshot()
	_, err = a.UpdateCatalog(ctx, func(c store.CatalogTx) error {
		_, err := c.Put(storetest.Group("g1", "p1", map[string]string{"mac": "52:54:00:00:00:01"}), -1)
		if err != nil {
			return err
		}
		_, err = c.Put(storetest.Group("g2", "p1", map[string]string{"mac": "52:54:00:00:00:01"}), -1)
		return err
	})
	if err == nil {
		t.Fatal("identical selectors accepted")
	}
	time.Sleep(100 * time.Millisecond)
	if b.Snapshot() != before {
		t.Error("a refused write changed another instance's snapshot")
	}

	// Another prefix is another installation; a new instance of this one
	// starts with everything.
	other := open(t, cluster, "other-site")
	if _, ok := other.Snapshot().Profile("p0"); ok {
		t.Error("another prefix sees this installation's catalog")
	}
	c := open(t, cluster, "site")
	if _, ok := c.Snapshot().Profile(fmt.Sprintf("p%d", writes-1)); !ok {
		t.Error("a new instance lacks the stored catalog")
	}
}

// TestConformance runs the machine and lease parts of the store
// conformance suite against a real 3-member etcd cluster.
func TestConformance(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	cli := cluster.Client(t)
	var n atomic.Int64
	open := func(t *testing.T) store.Backend {
		s, err := etcdstore.Open(context.Background(), etcdstore.Config{Client: cli, Prefix: fmt.Sprintf("conformance-%d", n.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Machines", func(t *testing.T) { storetest.RunMachines(t, open) })
	t.Run("Leases", func(t *testing.T) { storetest.RunLeases(t, open) })
}

// TestMachinesAcrossInstances: two instances racing to move one ready
// machine to provisioning (from ready) never both win, round after round;
// a machine discovered through one instance is in the other's memory.
func TestMachinesAcrossInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	a, b := open(t, cluster, "site"), open(t, cluster, "site")

	const rounds, racersPerInstance = 20, 4
	for round := range rounds {
		id := fmt.Sprintf("m%d", round)
		if _, err := a.PutMachine(ctx, &matchbox.Machine{ID: id, State: matchbox.StateReady}, -1); err != nil {
			t.Fatal(err)
		}
		var wins, conflicts atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range []*etcdstore.Store{a, b} {
			for range racersPerInstance {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					err := s.SetMachineState(ctx, id, matchbox.StateProvisioning, matchbox.StateReady)
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, store.ErrVersionConflict):
						conflicts.Add(1)
					default:
						t.Errorf("round %d: %v", round, err)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 2*racersPerInstance-1 {
			t.Fatalf("round %d: %d of %d racers moved the machine from ready (%d conflicts), want exactly one",
				round, wins.Load(), 2*racersPerInstance, conflicts.Load())
		}
		m, v, err := b.Machine(ctx, id)
		if err != nil || m.State != matchbox.StateProvisioning || v != 2 {
			t.Fatalf("round %d: machine %+v at version %d, %v", round, m, v, err)
		}
	}

	// Discovered through a, known to b (in memory) at once and by MAC.
	const mac = "52:54:00:aa:00:01"
	if err := a.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{{MAC: mac, Type: "dhcp.discover"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		if m, ok := b.LookupMachine(mac, ""); ok {
			if m.ID != store.MachineIDFromMAC(mac) {
				t.Errorf("other instance knows the MAC as machine %q", m.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a machine discovered through one instance is not in the other's memory within 1s")
		}
		time.Sleep(time.Millisecond)
	}
	// Both instances discovering one new MAC at once create one machine.
	const mac2 = "52:54:00:aa:00:02"
	var wg sync.WaitGroup
	for _, s := range []*etcdstore.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{{MAC: mac2, Type: "dhcp.discover"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	evs, err := b.Events(ctx, store.MachineIDFromMAC(mac2), store.EventFilter{})
	if err != nil || len(evs) != 2 {
		t.Errorf("timeline of a machine discovered through both instances at once: %v, %v", evs, err)
	}
	list, err := a.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != rounds+2 {
		t.Errorf("%d machines, want %d", len(list), rounds+2)
	}
}

// TestImportScopesAcrossInstances: two instances sharing one etcd prefix,
// each importing its own data directory at every start (scopes a and b),
// never delete each other's objects; emptying one directory deletes only
// its objects, on both instances.
func TestImportScopesAcrossInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	a, b := open(t, cluster, "site"), open(t, cluster, "site")
	dir := func(names ...string) []*store.Object {
		var objs []*store.Object
		for _, n := range names {
			o := storetest.Profile(n)
			o.Source = "profiles/" + n + ".json"
			objs = append(objs, o)
		}
		return objs
	}
	const scopeA, scopeB = "host-a:/var/lib/matchbox", "host-b:/var/lib/matchbox"
	for round := range 3 { // restarts: each imports its directory again
		if _, _, err := a.Import(ctx, scopeA, dir("a1", "a2")); err != nil {
			t.Fatalf("round %d, a: %v", round, err)
		}
		if _, _, err := b.Import(ctx, scopeB, dir("b1")); err != nil {
			t.Fatalf("round %d, b: %v", round, err)
		}
	}
	for _, s := range []*etcdstore.Store{a, b} {
		for _, id := range []string{"a1", "a2", "b1"} {
			if _, ok := s.Snapshot().Profile(id); !ok {
				t.Errorf("profile %q missing after both instances imported their directories", id)
			}
		}
	}
	res, _, err := b.Import(ctx, scopeB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 {
		t.Errorf("emptied directory of b deleted %d objects, want 1 (b1)", res.Deleted)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, hasB1 := a.Snapshot().Profile("b1")
		_, hasA1 := a.Snapshot().Profile("a1")
		if !hasB1 && hasA1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance a after b's directory was emptied: b1 present %v, a1 present %v", hasB1, hasA1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDiscoverBatchOfNewMACs: a batch of events from many new MACs (a
// boot storm's first requests) creates each machine once, with the UUID
// one of its events came with, and puts every event on its machine's
// timeline; the machines are ensured concurrently, not in turn (the
// batch's time is logged).
func TestDiscoverBatchOfNewMACs(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	s := open(t, cluster, "storm")
	const macs = 40
	var evs []matchbox.BootEvent
	for i := range macs {
		mac := fmt.Sprintf("52:54:00:bb:00:%02x", i)
		evs = append(evs, matchbox.BootEvent{MAC: mac, Type: "dhcp.discover"})
		evs = append(evs, matchbox.BootEvent{MAC: mac, UUID: fmt.Sprintf("11111111-0000-0000-0000-0000000000%02x", i), Type: "http.ipxe"})
	}
	start := time.Now()
	if err := s.DiscoverAndAppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events of %d new MACs in %v", len(evs), macs, time.Since(start))
	list, err := s.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != macs {
		t.Fatalf("%d machines for %d new MACs", len(list), macs)
	}
	for i := range macs {
		mac := fmt.Sprintf("52:54:00:bb:00:%02x", i)
		id := store.MachineIDFromMAC(mac)
		m, _, err := s.Machine(ctx, id)
		if err != nil {
			t.Fatalf("machine of %s: %v", mac, err)
		}
		if want := fmt.Sprintf("11111111-0000-0000-0000-0000000000%02x", i); m.UUID != want {
			t.Errorf("machine %s has UUID %q, want %q", id, m.UUID, want)
		}
		got, err := s.Events(ctx, id, store.EventFilter{})
		if err != nil || len(got) != 2 {
			t.Errorf("timeline of %s: %d events (%v), want 2", id, len(got), err)
		}
	}
}

// TestDiscoverBatchCreatesTogether: the machines of a batch's new MACs are
// created in one transaction per createChunk MACs, and what each was
// served recorded in one per MaxTxnOps/2, not one (or more) each: 100 new
// MACs advance etcd's revision by a handful of transactions (machines,
// events, served), where one by one they took over 200.
func TestDiscoverBatchCreatesTogether(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	s := open(t, cluster, "together")
	revision := revisionOf(t, cluster.Client(t))
	const macs = 100
	var evs []matchbox.BootEvent
	for i := range macs {
		mac := fmt.Sprintf("52:54:00:cc:00:%02x", i)
		evs = append(evs, matchbox.BootEvent{MAC: mac, Type: "dhcp.discover"},
			matchbox.BootEvent{MAC: mac, Type: "http.ipxe", Outcome: matchbox.Outcome{Status: 200, Group: "g", Profile: "p"}})
	}
	before := revision()
	if err := s.DiscoverAndAppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// Machines created, events written, what each was served recorded:
	// each a few transactions for the whole batch.
	if writes := revision() - before; writes > 8 {
		t.Errorf("%d new MACs took %d etcd writes, want at most 8 (machines created and updated together)", macs, writes)
	}
	list, err := s.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != macs {
		t.Fatalf("%d machines for %d new MACs", len(list), macs)
	}
	for _, m := range list {
		if m.State != matchbox.StateDiscovered || len(m.MACs) != 1 || m.ID != store.MachineIDFromMAC(m.MACs[0]) || m.ServedGroup != "g" || m.ServedProfile != "p" {
			t.Errorf("machine %+v, want discovered, its id from its one MAC, served group g and profile p", m)
		}
		if _, ok := s.LookupMachine(m.MACs[0], ""); !ok {
			t.Errorf("machine %s not in the index when the batch returned", m.ID)
		}
	}
}

// TestDiscoverBatchesRaceAcrossInstances: two instances discovering
// overlapping batches of new MACs at once create one machine per MAC, and
// both batches succeed (a chunk that loses the race is ensured one by one).
func TestDiscoverBatchesRaceAcrossInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	a, b := open(t, cluster, "race"), open(t, cluster, "race")
	batch := func(from, to int) []matchbox.BootEvent {
		var evs []matchbox.BootEvent
		for i := from; i < to; i++ {
			evs = append(evs, matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:dd:00:%02x", i), Type: "dhcp.discover"})
		}
		return evs
	}
	for range 5 {
		errs := make(chan error, 2)
		go func() { errs <- a.DiscoverAndAppendEvents(ctx, batch(0, 150)) }()
		go func() { errs <- b.DiscoverAndAppendEvents(ctx, batch(50, 200)) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := a.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, m := range list {
		for _, mac := range m.MACs {
			if other, ok := owners[mac]; ok {
				t.Errorf("MAC %s owned by %s and %s", mac, other, m.ID)
			}
			owners[mac] = m.ID
		}
	}
	if len(list) != 200 || len(owners) != 200 {
		t.Errorf("%d machines owning %d MACs, want 200 and 200", len(list), len(owners))
	}
	for i := range 200 {
		mac := fmt.Sprintf("52:54:00:dd:00:%02x", i)
		id := store.MachineIDFromMAC(mac)
		for name, s := range map[string]*etcdstore.Store{"a": a, "b": b} {
			got, err := s.Events(ctx, id, store.EventFilter{})
			want := 0
			if i < 150 {
				want += 5
			}
			if i >= 50 {
				want += 5
			}
			if err != nil || len(got) != want {
				t.Errorf("instance %s: timeline of %s: %d events (%v), want %d", name, id, len(got), err, want)
			}
		}
	}
}
