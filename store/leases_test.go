package store

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/dhcp"
)

// equateAddrs compares addresses with ==.
var equateAddrs = cmpopts.EquateComparable(netip.Addr{})

func lease(ip, mac string, state dhcp.LeaseState) dhcp.Lease {
	return dhcp.Lease{IP: netip.MustParseAddr(ip), MAC: mac, Hostname: "h", Expires: time.Unix(1_800_000_000, 0), State: state}
}

func put(l dhcp.Lease) dhcp.LeaseWrite { return dhcp.LeaseWrite{Lease: l} }

func del(ip, mac string) dhcp.LeaseWrite {
	return dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr(ip), MAC: mac}, Delete: true}
}

// TestCommitLeases: each case commits batches in order onto an empty
// store; a failing batch leaves nothing of itself behind.
func TestCommitLeases(t *testing.T) {
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	tests := []struct {
		name    string
		batches [][]dhcp.LeaseWrite
		wantErr []bool // per batch
		want    []dhcp.Lease
	}{
		{"put", [][]dhcp.LeaseWrite{{put(lease("10.0.0.1", m1, dhcp.LeaseBound))}}, []bool{false},
			[]dhcp.Lease{lease("10.0.0.1", m1, dhcp.LeaseBound)}},
		{"another MAC replaces the lease on an address", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.1", m1, dhcp.LeaseBound))},
			{put(lease("10.0.0.1", m2, dhcp.LeaseBound))},
		}, []bool{false, false}, []dhcp.Lease{lease("10.0.0.1", m2, dhcp.LeaseBound)}},
		{"move: delete then put in one batch", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.1", m1, dhcp.LeaseBound))},
			{del("10.0.0.1", m1), put(lease("10.0.0.2", m1, dhcp.LeaseBound))},
		}, []bool{false, false}, []dhcp.Lease{lease("10.0.0.2", m1, dhcp.LeaseBound)}},
		{"delete of another MAC's lease does nothing", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.1", m1, dhcp.LeaseBound))},
			{del("10.0.0.1", m2)},
		}, []bool{false, false}, []dhcp.Lease{lease("10.0.0.1", m1, dhcp.LeaseBound)}},
		{"a second lease for a MAC fails the whole batch", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.1", m1, dhcp.LeaseBound))},
			{put(lease("10.0.0.3", m2, dhcp.LeaseBound)), put(lease("10.0.0.2", m1, dhcp.LeaseBound))},
		}, []bool{false, true}, []dhcp.Lease{lease("10.0.0.1", m1, dhcp.LeaseBound)}},
		{"declined leases do not count as the MAC's lease", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.1", m1, dhcp.LeaseDeclined)), put(lease("10.0.0.2", m1, dhcp.LeaseBound))},
		}, []bool{false}, []dhcp.Lease{lease("10.0.0.1", m1, dhcp.LeaseDeclined), lease("10.0.0.2", m1, dhcp.LeaseBound)}},
		{"ordered by address text", [][]dhcp.LeaseWrite{
			{put(lease("10.0.0.9", m1, dhcp.LeaseBound)), put(lease("10.0.0.10", m2, dhcp.LeaseReleased))},
		}, []bool{false}, []dhcp.Lease{lease("10.0.0.10", m2, dhcp.LeaseReleased), lease("10.0.0.9", m1, dhcp.LeaseBound)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTest(t)
			for i, b := range tc.batches {
				if err := s.CommitLeases(ctx, b); (err != nil) != tc.wantErr[i] {
					t.Fatalf("batch %d: error %v, want error %v", i, err, tc.wantErr[i])
				}
			}
			got, err := s.LoadLeases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, equateAddrs); diff != "" {
				t.Errorf("stored leases (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeaseByIP(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	want := lease("10.0.0.1", "02:00:00:00:00:01", dhcp.LeaseBound)
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{put(want)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip        string
		want      dhcp.Lease
		wantFound bool
	}{
		{"10.0.0.1", want, true},
		{"10.0.0.2", dhcp.Lease{}, false},
	}
	for _, tc := range tests {
		got, found, err := s.LeaseByIP(ctx, netip.MustParseAddr(tc.ip))
		if err != nil || found != tc.wantFound {
			t.Fatalf("lease on %s: found %v, err %v; want found %v", tc.ip, found, err, tc.wantFound)
		}
		if diff := cmp.Diff(tc.want, got, equateAddrs); diff != "" {
			t.Errorf("lease on %s (-want +got):\n%s", tc.ip, diff)
		}
	}
}

// TestAllocatorOnSQLite runs dhcp.Allocator on the store: leases granted
// concurrently are each stored once, and they are what a new allocator on
// the reopened database holds.
func TestAllocatorOnSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	ranges := []dhcp.LeaseRange{{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.64")}}
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dhcp.OpenAllocator(ctx, dhcp.AllocatorConfig{Ranges: ranges, Storage: s})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := map[string]netip.Addr{}
	for i := range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
			ip, err := l.Offer(dhcp.OfferRequest{MAC: mac, Requested: netip.MustParseAddr("10.0.0.1")})
			if err != nil {
				return
			}
			if got, err := l.Bind(ctx, dhcp.BindRequest{MAC: mac, IP: ip, TTL: time.Hour}); err == nil {
				mu.Lock()
				granted[mac] = got.IP
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	l.Close()
	s.Close()
	if len(granted) != 64 {
		t.Fatalf("%d leases granted, want all 64 addresses", len(granted))
	}

	s, err = Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err = dhcp.OpenAllocator(ctx, dhcp.AllocatorConfig{Ranges: ranges, Storage: s})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stored, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]netip.Addr{}
	for _, st := range stored {
		got[st.MAC] = st.IP
	}
	if diff := cmp.Diff(granted, got, equateAddrs); diff != "" {
		t.Fatalf("stored leases (-granted +stored):\n%s", diff)
	}
	for mac, ip := range granted {
		if lease, ok := l.Lookup(mac); !ok || lease.IP != ip || lease.State != dhcp.LeaseBound {
			t.Fatalf("after reopening, lease of %s: %+v %v, want %s bound", mac, lease, ok, ip)
		}
	}
}

// TestLeaseCommitsRecoverAfterAFailedPrepare: a lease commit whose
// statements fail to prepare fails, and the next one, once the database
// can take it, prepares them again and commits instead of repeating the
// first failure until a restart.
func TestLeaseCommitsRecoverAfterAFailedPrepare(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if _, err := s.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The statements cannot prepare while the table is away.
	exec("ALTER TABLE leases RENAME TO leases_away")
	l := lease("10.0.0.5", "02:00:00:00:00:05", dhcp.LeaseBound)
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{put(l)}); err == nil {
		t.Fatal("commit without a leases table succeeded")
	}
	exec("ALTER TABLE leases_away RENAME TO leases")
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{put(l)}); err != nil {
		t.Fatalf("commit after the table returned: %v", err)
	}
	got, err := s.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]dhcp.Lease{l}, got, equateAddrs); diff != "" {
		t.Errorf("stored leases (-want +got):\n%s", diff)
	}
}
