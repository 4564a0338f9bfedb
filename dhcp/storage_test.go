package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestNoAddressTheStoreCannotKeep: while the lease storage cannot take
// writes, a DISCOVER gets no OFFER, a REQUEST whose commit fails (a new
// lease or a renewal) gets neither ACK nor NAK, the lease is not
// remembered as bound, and each is counted under the storage's reason;
// once the storage recovers, the same client gets its lease.
func TestNoAddressTheStoreCannotKeep(t *testing.T) {
	var degraded atomic.Value
	degraded.Store("")
	st := newMemStorage()
	l, err := OpenAllocator(context.Background(), AllocatorConfig{Ranges: []LeaseRange{{Start: netip.MustParseAddr("10.9.0.100"), End: netip.MustParseAddr("10.9.0.110")}}, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, _ := testServerWith(t, ModeAuthoritative, nil, func(c *Config) {
		c.StoreHealth = func() string { return degraded.Load().(string) }
	})
	s.cfg.Leases = l
	ctx := context.Background()
	renewing := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x21}
	newcomer := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x22}
	requested := func(ip netip.Addr) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4(ip)))
	}
	lease := func(mac net.HardwareAddr) netip.Addr {
		t.Helper()
		offer, _ := s.Handle(ctx, request(dhcpv4.MessageTypeDiscover, mac), netip.AddrPort{}, ServerPort)
		if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("%s: no offer", mac)
		}
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		ack, _ := s.Handle(ctx, req, netip.AddrPort{}, ServerPort)
		if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s: no ack: %v", mac, ack)
		}
		return addrOf(ack.YourIPAddr)
	}
	held := lease(renewing)
	before, _ := l.Lookup(renewing.String())

	// The disk fills: the store's commit fails and the store says so.
	st.mu.Lock()
	st.fail = errors.New("commit: storage full: database or disk is full (13)")
	st.mu.Unlock()
	degraded.Store("storage_full")
	if resp, _ := s.Handle(ctx, request(dhcpv4.MessageTypeDiscover, newcomer), netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatalf("DISCOVER answered %s while the store cannot write", resp.MessageType())
	}
	// A REQUEST for a free address (say from an OFFER made just before).
	free := netip.MustParseAddr("10.9.0.109")
	if resp, _ := s.Handle(ctx, request(dhcpv4.MessageTypeRequest, newcomer, requested(free)), netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatalf("REQUEST of a new lease answered %s though it was not stored", resp.MessageType())
	}
	if got, ok := l.Lookup(newcomer.String()); ok && got.State == LeaseBound {
		t.Fatalf("a lease that was not stored is bound: %+v", got)
	}
	// A renewal (unicast REQUEST with ciaddr).
	time.Sleep(1100 * time.Millisecond) // a later expiry, so the renewal writes
	renew := request(dhcpv4.MessageTypeRequest, renewing, dhcpv4.WithClientIP(ip4(held)))
	if resp, _ := s.Handle(ctx, renew, netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatalf("renewal answered %s though its lease was not stored", resp.MessageType())
	}
	if after, _ := l.Lookup(renewing.String()); after != before {
		t.Fatalf("a failed renewal changed the lease in memory: %+v, was %+v", after, before)
	}
	if got := testutilCount(s.cfg.Metrics.Dropped("storage_full")); got != 3 {
		t.Fatalf("dropped{reason=storage_full} = %v, want 3", got)
	}

	// Space returns.
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	degraded.Store("")
	if ip := lease(newcomer); !ip.IsValid() {
		t.Fatal("no lease after recovery")
	}
	if resp, _ := s.Handle(ctx, renew, netip.AddrPort{}, ServerPort); resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal after recovery: %v", resp)
	}
}
