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
// writes, a DISCOVER gets no OFFER, a REQUEST of a new lease whose commit
// fails gets neither ACK nor NAK and is not remembered as bound, each
// counted under the storage's reason; the renewal of a stored lease is
// acknowledged for the time left on it, unextended, and its client's
// DISCOVER is offered its address;
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
	// A renewal (unicast REQUEST with ciaddr): acknowledged for the time
	// left on the stored lease, not extended.
	time.Sleep(1100 * time.Millisecond) // a later expiry, so the renewal writes
	renew := request(dhcpv4.MessageTypeRequest, renewing, dhcpv4.WithClientIP(ip4(held)))
	resp, _ := s.Handle(ctx, renew, netip.AddrPort{}, ServerPort)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck || addrOf(resp.YourIPAddr) != held {
		t.Fatalf("renewal of a stored lease while the store cannot write: %v, want an ACK of %s", resp, held)
	}
	if got, left := resp.IPAddressLeaseTime(0), time.Until(before.Expires); got <= 0 || got > left {
		t.Fatalf("renewal while the store cannot write acknowledged for %v, more than the %v left on the stored lease", got, left)
	}
	if after, _ := l.Lookup(renewing.String()); after != before {
		t.Fatalf("a renewal that was not stored changed the lease in memory: %+v, was %+v", after, before)
	}
	// The renewing client starting over (DISCOVER) is offered its address.
	if resp, _ := s.Handle(ctx, request(dhcpv4.MessageTypeDiscover, renewing), netip.AddrPort{}, ServerPort); resp == nil ||
		resp.MessageType() != dhcpv4.MessageTypeOffer || addrOf(resp.YourIPAddr) != held {
		t.Fatalf("DISCOVER of a client holding a stored lease while the store cannot write: %v, want an OFFER of %s", resp, held)
	}
	if got := testutilCount(s.cfg.Metrics.Dropped("storage_full")); got != 2 {
		t.Fatalf("dropped{reason=storage_full} = %v, want 2", got)
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
