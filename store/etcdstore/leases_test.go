package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/dhcp"
	"matchbox/matchbox"
	"matchbox/store/etcdstore"
	"matchbox/store/etcdstore/etcdtest"
)

func openAllocator(t *testing.T, s *etcdstore.Store, first, last string) *dhcp.Allocator {
	t.Helper()
	a, err := dhcp.OpenAllocator(context.Background(), dhcp.AllocatorConfig{
		Ranges:    []dhcp.LeaseRange{{Start: netip.MustParseAddr(first), End: netip.MustParseAddr(last)}},
		Storage:   s,
		MaxBatch:  s.MaxLeaseBatch(),
		OfferHold: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestLeasesAcrossInstances: two allocators of two instances serving the
// same range (a misconfiguration that must stay safe) allocate at once
// for more clients than the range has addresses; no address is ever
// acknowledged to two MACs, every acknowledged lease is stored, and each
// MAC has one lease. Then expiry, DECLINE and RELEASE through one
// instance hold on the other.
func TestLeasesAcrossInstances(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	sa, sb := open(t, cluster, "site"), open(t, cluster, "site")
	const first, last = "10.0.0.10", "10.0.0.49" // 40 addresses
	allocs := []*dhcp.Allocator{openAllocator(t, sa, first, last), openAllocator(t, sb, first, last)}

	const clientsPerInstance = 30 // 60 clients for 40 addresses
	var mu sync.Mutex
	acked := map[netip.Addr]string{} // address → MAC it was acknowledged to
	ackedMAC := map[string]netip.Addr{}
	var taken, full int
	var wg sync.WaitGroup
	for inst, al := range allocs {
		for c := range clientsPerInstance {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mac := fmt.Sprintf("02:00:00:00:%02x:%02x", inst, c)
				for try := 0; try < 20; try++ {
					ip, err := al.Offer(dhcp.OfferRequest{MAC: mac})
					if errors.Is(err, dhcp.ErrNoFreeAddress) {
						mu.Lock()
						full++
						mu.Unlock()
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					l, err := al.Bind(ctx, dhcp.BindRequest{MAC: mac, IP: ip, TTL: time.Hour})
					if errors.Is(err, dhcp.ErrAddressTaken) {
						mu.Lock()
						taken++
						mu.Unlock()
						continue // the client is NAKed and starts again
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if other, ok := acked[l.IP]; ok && other != mac {
						t.Errorf("address %s acknowledged to %s and to %s", l.IP, other, mac)
					}
					acked[l.IP], ackedMAC[mac] = mac, l.IP
					return
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d clients, 40 addresses: %d leases acknowledged, %d binds refused as taken by the other instance, %d clients found no free address",
		2*clientsPerInstance, len(acked), taken, full)
	if taken == 0 {
		t.Errorf("the race did not happen: %d acknowledged, none refused", len(acked))
	}
	if len(acked) != 40 {
		t.Errorf("%d of 40 addresses acknowledged: the allocators did not learn each other's leases", len(acked))
	}
	stored, err := sb.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perMAC := map[string]int{}
	for _, l := range stored {
		if mac, ok := acked[l.IP]; ok && mac != l.MAC {
			t.Errorf("address %s acknowledged to %s is stored for %s", l.IP, mac, l.MAC)
		}
		if l.State == dhcp.LeaseBound {
			perMAC[l.MAC]++
		}
	}
	for ip, mac := range acked {
		if l, ok, err := sa.LeaseByIP(ctx, ip); err != nil || !ok || l.MAC != mac || l.State != dhcp.LeaseBound {
			t.Errorf("acknowledged lease %s of %s: stored %+v %v %v", ip, mac, l, ok, err)
		}
	}
	for mac, n := range perMAC {
		if n > 1 {
			t.Errorf("MAC %s has %d bound leases", mac, n)
		}
	}

	// A fresh pair of allocators over another range: lease states written
	// through a are honoured by b.
	a := openAllocator(t, sa, "10.0.1.10", "10.0.1.19")
	b := openAllocator(t, sb, "10.0.1.10", "10.0.1.19")
	x := netip.MustParseAddr("10.0.1.10")
	const m1, m2 = "02:00:00:01:00:01", "02:00:00:01:00:02"
	if _, err := a.Bind(ctx, dhcp.BindRequest{MAC: m1, IP: x, TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bind(ctx, dhcp.BindRequest{MAC: m2, IP: x, TTL: time.Hour}); !errors.Is(err, dhcp.ErrAddressTaken) {
		t.Fatalf("bind of an address another instance leased: %v, want ErrAddressTaken", err)
	}
	time.Sleep(3 * time.Second) // expiry
	if _, err := b.Bind(ctx, dhcp.BindRequest{MAC: m2, IP: x, TTL: time.Hour}); err != nil {
		t.Fatalf("bind of an address whose lease expired on another instance: %v", err)
	}
	if err := b.Release(ctx, m2, x); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := sa.LeaseByIP(ctx, x); l.State != dhcp.LeaseReleased || l.MAC != m2 {
		t.Errorf("release through one instance, seen through the other: %+v", l)
	}
	if _, err := a.Bind(ctx, dhcp.BindRequest{MAC: m1, IP: x, TTL: time.Hour}); err != nil {
		t.Fatalf("bind of an address released through another instance: %v", err)
	}
	if err := a.Decline(ctx, m1, x); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := sb.LeaseByIP(ctx, x); l.State != dhcp.LeaseDeclined {
		t.Errorf("decline through one instance, seen through the other: %+v", l)
	}
	if _, err := b.Bind(ctx, dhcp.BindRequest{MAC: m2, IP: x, TTL: time.Hour}); !errors.Is(err, dhcp.ErrAddressTaken) {
		t.Errorf("bind of an address declined through another instance: %v, want ErrAddressTaken", err)
	}
}

// TestMaxTxnOps: a store told that etcd takes more operations per
// transaction (Config.MaxTxnOps, etcd's --max-txn-ops) commits larger lease
// batches and creates more new machines per transaction; a store at the
// default refuses, before sending it, a batch larger than etcd's default
// takes.
func TestMaxTxnOps(t *testing.T) {
	cluster := etcdtest.StartWith(t, 3, etcdtest.Options{Args: []string{"--max-txn-ops", "1024"}})
	ctx := context.Background()
	cli := cluster.Client(t)
	revision := revisionOf(t, cli)
	wide, err := etcdstore.Open(ctx, etcdstore.Config{Client: cli, Prefix: "ops", MaxTxnOps: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wide.Close() })
	narrow := open(t, cluster, "ops")
	if got := wide.MaxLeaseBatch(); got != 256 {
		t.Errorf("MaxLeaseBatch at 1024 operations = %d, want 256", got)
	}
	if got := narrow.MaxLeaseBatch(); got != 32 {
		t.Errorf("MaxLeaseBatch at the default = %d, want 32", got)
	}
	batch := func(n, from int) []dhcp.LeaseWrite {
		var ws []dhcp.LeaseWrite
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 9, byte((from + i) / 250), byte(1 + (from+i)%250)})
			ws = append(ws, dhcp.LeaseWrite{Lease: dhcp.Lease{IP: ip, MAC: fmt.Sprintf("52:54:00:ee:%02x:%02x", (from+i)/256, (from+i)%256),
				Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound}})
		}
		return ws
	}
	if err := narrow.CommitLeases(ctx, batch(200, 0)); err == nil {
		t.Error("a store at the default committed a batch of 200 leases in one transaction")
	}
	before := revision()
	if err := wide.CommitLeases(ctx, batch(200, 0)); err != nil {
		t.Fatalf("a batch of 200 leases at 1024 operations: %v", err)
	}
	if got := revision() - before; got != 1 {
		t.Errorf("a batch of 200 leases took %d transactions, want 1", got)
	}
	var evs []matchbox.BootEvent
	for i := range 200 {
		evs = append(evs, matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:ef:00:%02x", i), Type: "dhcp.discover"})
	}
	before = revision()
	if err := wide.DiscoverAndAppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// One transaction creates the 200 machines, one writes their events.
	if got := revision() - before; got > 3 {
		t.Errorf("200 new MACs took %d transactions at 1024 operations, want at most 3", got)
	}
	if _, err := etcdstore.Open(ctx, etcdstore.Config{Client: cli, Prefix: "ops", MaxTxnOps: 4}); err == nil {
		t.Error("a store opened with MaxTxnOps 4")
	}
}

// countingKV counts the transactions sent through it.
type countingKV struct {
	clientv3.KV
	txns atomic.Int64
}

func (c *countingKV) Txn(ctx context.Context) clientv3.Txn {
	c.txns.Add(1)
	return c.KV.Txn(ctx)
}

// TestLeaseCommitsOnWhatItSaw: a lease batch goes on the keys as this
// instance last saw them, in one transaction (no read first) when it saw
// right; when another instance changed a key since, the condition fails,
// nothing is written, and the batch reads and decides again: an address
// the other instance released is taken, one it leased meanwhile is refused.
func TestLeaseCommitsOnWhatItSaw(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	cli := cluster.Client(t)
	counted := &countingKV{KV: cli.KV}
	cli.KV = counted
	a, err := etcdstore.Open(ctx, etcdstore.Config{Client: cli, Prefix: "seen"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := open(t, cluster, "seen")
	lease := func(ip, mac string) dhcp.LeaseWrite {
		return dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr(ip), MAC: mac, Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound}}
	}
	commit := func(s *etcdstore.Store, ws ...dhcp.LeaseWrite) error { return s.CommitLeases(ctx, ws) }

	// New clients: one transaction, the commit.
	before := counted.txns.Load()
	if err := commit(a, lease("10.8.0.1", "52:54:00:aa:00:01"), lease("10.8.0.2", "52:54:00:aa:00:02")); err != nil {
		t.Fatal(err)
	}
	if got := counted.txns.Load() - before; got != 1 {
		t.Errorf("a batch of new clients took %d transactions, want 1 (no read first)", got)
	}
	// A renewal of what a wrote: one transaction too.
	before = counted.txns.Load()
	if err := commit(a, lease("10.8.0.1", "52:54:00:aa:00:01")); err != nil {
		t.Fatal(err)
	}
	if got := counted.txns.Load() - before; got != 1 {
		t.Errorf("a renewal took %d transactions, want 1", got)
	}
	// b releases 10.8.0.2 and leases 10.8.0.3, which a never saw.
	if err := commit(b, dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr("10.8.0.2"), MAC: "52:54:00:aa:00:02"}, Delete: true},
		lease("10.8.0.3", "52:54:00:bb:00:03")); err != nil {
		t.Fatal(err)
	}
	// a still thinks 10.8.0.2 held: it reads, finds it free, takes it.
	if err := commit(a, lease("10.8.0.2", "52:54:00:aa:00:04")); err != nil {
		t.Fatalf("an address released through another instance: %v", err)
	}
	// a thinks 10.8.0.3 free: the condition fails, it reads, refuses.
	if err := commit(a, lease("10.8.0.3", "52:54:00:aa:00:05")); !errors.Is(err, dhcp.ErrAddressTaken) {
		t.Fatalf("an address leased through another instance: err = %v, want ErrAddressTaken", err)
	}
	for ip, want := range map[string]string{"10.8.0.1": "52:54:00:aa:00:01", "10.8.0.2": "52:54:00:aa:00:04", "10.8.0.3": "52:54:00:bb:00:03"} {
		l, ok, err := b.LeaseByIP(ctx, netip.MustParseAddr(ip))
		if err != nil || !ok || l.MAC != want {
			t.Errorf("lease on %s: %+v %v %v, want MAC %s", ip, l, ok, err, want)
		}
	}
}
