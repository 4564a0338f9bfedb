package store

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// TestRefreshMachineAllocatesOneMachine: the index's reload of one
// machine after a write allocates that machine alone, not a block of
// machineBlock (a block stays in memory while any machine in it does:
// every machine a boot storm discovers held 256, 175 MiB at 5,000).
func TestRefreshMachineAllocatesOneMachine(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		id, _, err := s.EnsureMachine(ctx, fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), "")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		if err := s.refreshMachine(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	// A machine is well under 1 KiB, a block of 256 over 100 KiB; the
	// query and its row cost a few KiB more.
	if per > 32<<10 {
		t.Fatalf("refreshing one machine allocates %d bytes, want a few KiB (one machine, not a block of %d)", per, machineBlock)
	}
	t.Logf("refreshing one machine allocates %d bytes", per)
}
