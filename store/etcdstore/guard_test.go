package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"matchbox/dhcp"
	"matchbox/store"
	"matchbox/store/etcdstore"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// TestEtcdMembersLost: with one of three members stopped, catalog writes
// go on and the store stays healthy; with all three stopped, the store
// turns degraded without any write (its check), a write fails at once
// with store.ErrUnavailable, and the snapshot keeps serving; once the
// members are back, the probe makes it healthy again and writes succeed,
// without reopening the store.
func TestEtcdMembersLost(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Client: cluster.Client(t), Prefix: "lost", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	write := func(id string) error {
		_, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error { _, err := c.Put(storetest.Profile(id), -1); return err })
		return err
	}
	if err := write("before"); err != nil {
		t.Fatal(err)
	}

	// Writes run while a member stops: those in flight on it are sent
	// again to another.
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				t.Logf("%d writes while one member stopped", n)
				done <- nil
				return
			default:
			}
			if err := write(fmt.Sprintf("one-down-%d", n)); err != nil {
				done <- fmt.Errorf("write %d while one member of three stops: %w", n, err)
				return
			}
			n++
		}
	}()
	time.Sleep(300 * time.Millisecond)
	cluster.StopMember(0)
	time.Sleep(time.Second)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := write("one-down-last"); err != nil {
		t.Fatalf("write with one member of three stopped: %v", err)
	}
	if hs := s.Health().State(); hs.Degraded() {
		t.Fatalf("degraded with one member of three stopped: %+v", hs)
	}
	cluster.StartMember(0)

	for i := range 3 {
		cluster.StopMember(i)
	}
	stopped := time.Now()
	probeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.Health().Run(probeCtx, 200*time.Millisecond, s.Probe)
	for !s.Health().State().Degraded() {
		if time.Since(stopped) > 15*time.Second {
			t.Fatal("not degraded 15s after every member stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("degraded %v after every member stopped: %s", time.Since(stopped).Round(10*time.Millisecond), s.Health().State().Cause)
	start := time.Now()
	err = write("lost")
	if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("write with etcd lost: %v after %v, want store.ErrUnavailable at once", err, time.Since(start))
	}
	if _, ok := s.Snapshot().Profile("one-down-last"); !ok {
		t.Fatal("the snapshot lost a profile while etcd is lost")
	}

	for i := range 3 {
		cluster.StartMember(i)
	}
	restarted := time.Now()
	for s.Health().State().Degraded() {
		if time.Since(restarted) > 30*time.Second {
			t.Fatalf("still degraded 30s after every member started again: %+v", s.Health().State())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("healthy %v after every member started again", time.Since(restarted).Round(10*time.Millisecond))
	if err := write("after"); err != nil {
		t.Fatalf("write once etcd is back: %v", err)
	}
	if _, ok := s.Snapshot().Profile("after"); !ok {
		t.Fatal("a write once etcd is back is not in the snapshot")
	}
}

// TestWritesWhileLeaderStops: lease commits and catalog writes go on while
// the leader is stopped (three times, the leader of the moment each time)
// and started again: none fails, the store is never degraded, and every
// acknowledged lease is read back by a store opened afterwards. A leader
// stepping down may drop a proposal another member forwarded to it; that
// write is sent again instead of waiting for the request timeout.
func TestWritesWhileLeaderStops(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	cli := cluster.Client(t)
	s := open(t, cluster, "leader")
	var (
		mu       sync.Mutex
		failures []error
		leases   []dhcp.Lease
		degraded bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for g := range 3 {
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				l := dhcp.Lease{IP: netip.AddrFrom4([4]byte{10, byte(g), byte(i / 250), byte(1 + i%250)}),
					MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", g, i/256, i%256), Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound}
				err := s.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: l}})
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Errorf("lease %s of %s: %w", l.IP, l.MAC, err))
				} else {
					leases = append(leases, l)
				}
				degraded = degraded || s.Health().State().Degraded()
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for i := 0; !stopped(); i++ {
			_, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error {
				_, err := c.Put(storetest.Profile(fmt.Sprintf("p%d", i)), -1)
				return err
			})
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("catalog write %d: %w", i, err))
				mu.Unlock()
			}
		}
	})
	leader := func() int {
		for {
			for i, ep := range cluster.Endpoints {
				st, err := cli.Status(ctx, ep)
				if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
					return i
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for range 3 {
		time.Sleep(time.Second)
		l := leader()
		cluster.StopMember(l)
		time.Sleep(1500 * time.Millisecond)
		cluster.StartMember(l)
		t.Logf("stopped and started the leader, member %d", l)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	for _, err := range failures {
		t.Error(err)
	}
	if degraded {
		t.Error("the store was degraded while etcd had a quorum")
	}
	t.Logf("%d leases committed while leaders stopped", len(leases))
	after := open(t, cluster, "leader")
	for _, want := range leases {
		got, ok, err := after.LeaseByIP(ctx, want.IP)
		if err != nil || !ok || got.MAC != want.MAC {
			t.Errorf("acknowledged lease %s of %s read back as %+v (found %v, %v)", want.IP, want.MAC, got, ok, err)
		}
	}
}
