package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"
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

// TestLeasesUpgradeWithoutRowid: a database written by a binary of schema
// version 6 (leases in a rowid table with an index on expiry) keeps its
// leases when it is opened by this one, whose leases table has no rowid
// and no expiry index, and the MAC stays unique among leases not declined.
func TestLeasesUpgradeWithoutRowid(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "matchbox.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 6; n++ {
		names, err := fs.Glob(migrationFS, fmt.Sprintf("migrations/%04d_*.sql", n))
		if err != nil || len(names) != 1 {
			t.Fatalf("migration %d: %v %v", n, names, err)
		}
		body, err := migrationFS.ReadFile(names[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(body)); err != nil {
			t.Fatalf("%s: %v", names[0], err)
		}
	}
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	old := []dhcp.Lease{
		lease("10.0.0.1", m1, dhcp.LeaseDeclined),
		lease("10.0.0.2", m1, dhcp.LeaseBound),
		lease("10.0.0.3", m2, dhcp.LeaseOffered),
	}
	for _, l := range old {
		if _, err := db.ExecContext(ctx, "INSERT INTO leases (ip, mac, hostname, expires_at, state, updated_at) VALUES (?, ?, ?, ?, ?, 1)",
			l.IP.String(), l.MAC, l.Hostname, l.Expires.Unix(), string(l.State)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "PRAGMA user_version = 6"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(old, got, equateAddrs); d != "" {
		t.Errorf("leases after the upgrade (-want +got):\n%s", d)
	}
	var table string
	if err := s.read.QueryRowContext(ctx, "SELECT sql FROM sqlite_schema WHERE name = 'leases'").Scan(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "WITHOUT ROWID") {
		t.Errorf("leases table after the upgrade is not WITHOUT ROWID: %s", table)
	}
	var indexes []string
	rows, err := s.read.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'leases' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, name)
	}
	rows.Close()
	if d := cmp.Diff([]string{"leases_mac"}, indexes); d != "" {
		t.Errorf("indexes on leases (-want +got):\n%s", d)
	}
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{put(lease("10.0.0.4", m2, dhcp.LeaseBound))}); err == nil {
		t.Error("a second lease for a MAC not declined was committed after the upgrade")
	}
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{put(lease("10.0.0.4", m1, dhcp.LeaseDeclined))}); err != nil {
		t.Errorf("a second declined lease of a MAC: %v", err)
	}
}
