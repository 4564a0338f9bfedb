package store

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"matchbox/dhcp"
)

// TestCheckpointerCopiesWAL: commits only append to the WAL (the write
// connection does not checkpoint), and the background checkpointer copies
// what was committed into the database file within a few intervals; Close
// leaves nothing in the WAL.
func TestCheckpointerCopiesWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size(path)
	// About 3 MiB of leases: far past SQLite's automatic checkpoint of
	// 1,000 pages.
	for b := range 40 {
		var writes []dhcp.LeaseWrite
		for i := range 500 {
			n := b*500 + i
			ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			l := dhcp.Lease{IP: ip, MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(n>>16), byte(n>>8), byte(n)),
				Hostname: "a-rather-long-hostname-to-fill-pages", Expires: time.Unix(1_800_000_000, 0), State: dhcp.LeaseBound}
			writes = append(writes, dhcp.LeaseWrite{Lease: l})
		}
		if err := s.CommitLeases(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * checkpointInterval)
	for size(path) < before+1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d, WAL %d) %v after the commits: nothing checkpointed it",
				size(path), before, size(path+"-wal"), 20*checkpointInterval)
		}
		time.Sleep(checkpointInterval / 4)
	}
	leases, err := s.LoadLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 20000 {
		t.Fatalf("%d leases stored, want 20000", len(leases))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := size(path + "-wal"); n != 0 {
		t.Errorf("WAL is %d bytes after Close, want 0 (checkpointed and removed)", n)
	}
}
