package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/dhcp"
	"matchbox/internal/fulldisktest"
)

// A database on a full disk cannot be opened for writing (WAL's index
// needs space): Open reads it read-only, refuses writes as ErrStorageFull,
// and Probe leaves the fallback once space returns, after which reads see
// new writes.
func TestOpenReadOnlyOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := fulldisktest.Mount(t, "2m")
	path := filepath.Join(dir, "matchbox.db")
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(profileObj("before"), -1); return err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	filler := fulldisktest.Fill(t, dir)

	s, err = Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if !s.readOnly.on.Load() {
		t.Fatal("opened on a full disk without the read-only fallback")
	}
	if _, ok := s.Snapshot().Profile("before"); !ok {
		t.Fatal("the stored profile is not in the snapshot read read-only")
	}
	if hs := s.Health().State(); hs.Reason != ReasonFull {
		t.Fatalf("health after a read-only open on a full disk: %+v", hs)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping read-only: %v", err)
	}
	_, err = s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(profileObj("after"), -1); return err })
	if !errors.Is(err, ErrStorageFull) {
		t.Fatalf("write while read-only: %v, want ErrStorageFull", err)
	}
	lease := dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr("10.0.0.5"), MAC: "52:54:00:00:00:05", Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound}}
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{lease}); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("lease commit while read-only: %v, want ErrStorageFull", err)
	}
	if err := s.Probe(ctx); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("probe on a full disk: %v, want ErrStorageFull", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("probe once space returned: %v", err)
	}
	if s.readOnly.on.Load() || s.Health().State().Degraded() {
		t.Fatalf("still read-only (%v) or degraded (%+v) after a successful probe", s.readOnly.on.Load(), s.Health().State())
	}
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(profileObj("after"), -1); return err }); err != nil {
		t.Fatalf("write once space returned: %v", err)
	}
	if err := s.CommitLeases(ctx, []dhcp.LeaseWrite{lease}); err != nil {
		t.Fatalf("lease commit once space returned: %v", err)
	}
	// The read pool's connections opened read-only are gone: every read
	// sees the commits.
	for range 20 {
		leases, err := s.LoadLeases(ctx)
		if err != nil || len(leases) != 1 {
			t.Fatalf("leases read after the commit: %v %v", leases, err)
		}
	}
}

// A write that fits in pages SQLite already holds (a write-ahead log it
// rewrites from its start) succeeds on a full disk; it must not make the
// store healthy while the disk is still full, or DHCP would offer new
// addresses and /healthz say ok until the next write needing space fails.
// Only space returning, seen by the probe, ends the degradation.
func TestWriteFittingOnAFullDiskKeepsDegraded(t *testing.T) {
	ctx := context.Background()
	dir := fulldisktest.Mount(t, "2m")
	s, err := Open(ctx, Config{Path: filepath.Join(dir, "matchbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leases := make([]dhcp.LeaseWrite, 100)
	for i := range leases {
		leases[i] = dhcp.LeaseWrite{Lease: dhcp.Lease{
			IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), MAC: fmt.Sprintf("52:54:00:00:01:%02x", i),
			Hostname: strings.Repeat("h", 200), Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound,
		}}
	}
	if err := s.CommitLeases(ctx, leases); err != nil {
		t.Fatal(err)
	}
	// The log is copied into the database; the next commit rewrites the
	// log from its start, in space the file already has.
	if _, err := s.write.ExecContext(ctx, "PRAGMA wal_checkpoint(RESTART)"); err != nil {
		t.Fatal(err)
	}
	filler := fulldisktest.Fill(t, dir)
	s.Health().Observe(fmt.Errorf("commit: %w", &storageError{ErrStorageFull, errors.New("database or disk is full")}))

	one := leases[:1]
	one[0].Lease.Expires = time.Now().Add(2 * time.Hour)
	if err := s.CommitLeases(ctx, one); err != nil {
		t.Fatalf("a one-lease commit into the rewritten log on a full disk: %v (it should fit)", err)
	}
	if hs := s.Health().State(); hs.Reason != ReasonFull {
		t.Fatalf("health after a write that fitted on a still full disk: %+v, want %s", hs, ReasonFull)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitLeases(ctx, one); err != nil {
		t.Fatalf("commit once space returned: %v", err)
	}
	if hs := s.Health().State(); hs.Degraded() {
		t.Fatalf("still degraded after a write with space back: %+v", hs)
	}
}
