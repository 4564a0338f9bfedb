package store

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"matchbox/dhcp"
)

// BenchmarkCommitLeases commits group commits of 32 new bound leases, as
// the DHCP server's lease writer does under a flood of new clients, at
// synchronous=NORMAL so that the figure is SQLite's work per lease rather
// than the disk's flush. Reported: wall and CPU (user and system, of the
// whole process) ns per lease; on a shared machine the CPU figure is the
// steadier one.
func BenchmarkCommitLeases(b *testing.B) {
	const batch = 32
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(b.TempDir(), "matchbox.db"), Synchronous: "NORMAL"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	writes := make([]dhcp.LeaseWrite, batch)
	n := 0
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := 0; i < b.N; i++ {
		for j := range writes {
			ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			writes[j] = dhcp.LeaseWrite{Lease: dhcp.Lease{IP: ip, MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n)),
				Expires: time.Unix(1_800_000_000+int64(n), 0), State: dhcp.LeaseBound}}
			n++
		}
		if err := s.CommitLeases(ctx, writes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/lease")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/lease")
}

// processCPU returns the CPU time the process has used so far, in
// nanoseconds (getrusage: user and system, all threads). A benchmark's
// CPU per operation is steadier than its wall time on a shared machine.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
