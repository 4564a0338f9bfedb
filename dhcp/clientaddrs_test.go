package dhcp

import (
	"net/netip"
	"testing"
	"time"
)

// TestClientAddrsSweepBounded fills the address notes past the sweep mark
// with fresh notes: a sweep removes nothing then, so further notes must
// not walk the map again until clientAddrsSweepEvery has passed, and a
// later sweep removes the notes older than clientAddrTTL.
func TestClientAddrsSweepBounded(t *testing.T) {
	var c clientAddrs
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := 0; i < clientAddrsSweepAt; i++ {
		c.note(addr(i), "52:54:00:00:00:01", start)
	}
	for i := 0; i < 1000; i++ {
		c.note(addr(clientAddrsSweepAt+i), "52:54:00:00:00:02", start.Add(time.Duration(i)*time.Millisecond))
	}
	if c.sweeps != 1 {
		t.Fatalf("%d sweeps for 1,000 notes within %v past the mark, want 1", c.sweeps, clientAddrsSweepEvery)
	}
	if got := len(c.m); got != clientAddrsSweepAt+1000 {
		t.Fatalf("%d notes kept, want %d (all fresh)", got, clientAddrsSweepAt+1000)
	}

	// A day later every note above has expired; the next note sweeps them.
	later := start.Add(clientAddrTTL + clientAddrsSweepEvery + time.Second)
	c.note(addr(0), "52:54:00:00:00:03", later)
	if c.sweeps != 2 {
		t.Fatalf("%d sweeps after the TTL, want 2", c.sweeps)
	}
	if got := len(c.m); got != 1 {
		t.Fatalf("%d notes kept after the sweep, want 1", got)
	}
	if mac, ok := c.lookup(addr(0), later); !ok || mac != "52:54:00:00:00:03" {
		t.Fatalf("lookup after the sweep = %q, %v; want the new note", mac, ok)
	}
	if _, ok := c.lookup(addr(5), later); ok {
		t.Fatal("an expired note was found")
	}
}
