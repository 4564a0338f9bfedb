package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"matchbox/dhcp"
	"matchbox/internal/needs"
)

// fullTmpfs mounts a small tmpfs, and returns its directory and a function
// that fills it with a file (returning the file's path).
func fullTmpfs(t *testing.T) (string, func() string) {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root (mounts a tmpfs to fill)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		needs.Skipf(t, "cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir, func() string {
		path := filepath.Join(dir, "fill")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for size := len(buf); size > 0; {
			if _, err := f.Write(buf[:size]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				size /= 2
			}
		}
		return path
	}
}

// A database on a full disk cannot be opened for writing (WAL's index
// needs space): Open reads it read-only, refuses writes as ErrStorageFull,
// and Probe leaves the fallback once space returns, after which reads see
// new writes.
func TestOpenReadOnlyOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir, fill := fullTmpfs(t)
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
	filler := fill()

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
	dir, fill := fullTmpfs(t)
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
	filler := fill()
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
