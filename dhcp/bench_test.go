package dhcp_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"matchbox/dhcp"
	"matchbox/store"
)

// BenchmarkExchange measures a DISCOVER/REQUEST exchange of a new client
// against a SQLite lease store and event recorder, in parallel (the
// REQUESTs' lease writes are group-committed).
func BenchmarkExchange(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(b.TempDir(), "m.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	leases, err := dhcp.OpenAllocator(ctx, dhcp.AllocatorConfig{Ranges: []dhcp.LeaseRange{{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.15.255.254")}}, Storage: st})
	if err != nil {
		b.Fatal(err)
	}
	defer leases.Close()
	rec := store.NewRecorder(st, store.RecorderConfig{Discover: true})
	go rec.Run(ctx)
	s, err := dhcp.New(dhcp.Config{Mode: dhcp.ModeAuthoritative, LeaseTime: time.Hour, Ranges: []dhcp.Range{{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.15.255.254")}},
		Subnet: netip.MustParsePrefix("10.0.0.0/12"), ServerIP: netip.MustParsePrefix("10.0.0.0/12").Addr().Next(), Leases: leases, Events: rec})
	if err != nil {
		b.Fatal(err)
	}
	var n uint32
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	b.ReportAllocs()
	// Many exchanges in flight, as a server's workers have: the lease
	// writes of waiting REQUESTs share commits.
	b.SetParallelism(128)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			<-mu
			n++
			i := n
			mu <- struct{}{}
			mac := net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			d, _ := dhcpv4.NewDiscovery(mac)
			offer, _ := s.HandlePacket(ctx, d.ToBytes(), netip.AddrPort{}, dhcp.ServerPort)
			if offer == nil {
				b.Fatal("no offer")
			}
			r, _ := dhcpv4.NewRequestFromOffer(offer)
			ack, _ := s.HandlePacket(ctx, r.ToBytes(), netip.AddrPort{}, dhcp.ServerPort)
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				b.Fatal("no ack")
			}
		}
	})
}
