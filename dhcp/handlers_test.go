package dhcp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"matchbox/matchbox"
)

var (
	testMAC    = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	testServer = netip.MustParseAddr("10.9.0.1")
	testSubnet = netip.MustParsePrefix("10.9.0.0/24")
)

// fakeMachines is a fixed machine table.
type fakeMachines map[string]Machine

func (f fakeMachines) LookupMachine(_ context.Context, mac, uuid string) (Machine, bool) {
	m, ok := f[mac]
	return m, ok
}

// fakeEvents collects events.
type fakeEvents struct {
	mu  sync.Mutex
	evs []matchbox.BootEvent
}

func (f *fakeEvents) Record(ev matchbox.BootEvent) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, ev)
	return true
}

func (f *fakeEvents) types() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.evs {
		out = append(out, e.Type)
	}
	return strings.Join(out, " ")
}

func testServerWith(t testing.TB, mode string, machines fakeMachines, mutate func(*Config)) (*Server, *fakeEvents) {
	t.Helper()
	ev := &fakeEvents{}
	cfg := Config{
		Mode: mode, ServerIP: testServer, Subnet: testSubnet, Router: netip.MustParseAddr("10.9.0.254"),
		DNS: []netip.Addr{netip.MustParseAddr("10.9.0.53")}, Domain: "lab", BootURL: "http://10.9.0.1:8080",
		Ranges:   []Range{{Start: netip.MustParseAddr("10.9.0.100"), End: netip.MustParseAddr("10.9.0.110")}},
		Machines: machines, Events: ev, LeaseTime: time.Hour,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if mode == ModeAuthoritative {
		l, err := OpenAllocator(context.Background(), AllocatorConfig{Ranges: LeaseRanges(cfg.Ranges), Storage: newMemStorage()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		cfg.Leases = l
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, ev
}

// request builds a client request with the given boot options.
func request(mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt), dhcpv4.WithBroadcast(true)}, mods...)...)
	if err != nil {
		panic(err)
	}
	return d
}

func withArch(arch iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(arch)) }
func withClass(c string) dhcpv4.Modifier      { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(c)) }
func withIPXE() dhcpv4.Modifier               { return dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")) }

func TestBootHandler(t *testing.T) {
	cases := []struct {
		name     string
		req      *dhcpv4.DHCPv4
		machine  *Machine
		chain    bool
		wantFile string
		wantTFTP bool
		wantHTTP bool // option 60 HTTPClient echoed
	}{
		{name: "bios pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withClass("PXEClient:Arch:00000:UNDI:002001")), wantFile: "undionly.kpxe", wantTFTP: true},
		{name: "uefi pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016")), wantFile: "ipxe.efi", wantTFTP: true},
		{name: "arm64 pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(11)), wantFile: "arm64/snponly.efi", wantTFTP: true},
		{name: "ipxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE()), wantFile: "http://10.9.0.1:8080/boot.ipxe"},
		{name: "http boot", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(16), withClass("HTTPClient:Arch:00016:UNDI:003001")), wantFile: "http://10.9.0.1:8080/assets/tftp/ipxe.efi", wantHTTP: true},
		{name: "not netboot", req: request(dhcpv4.MessageTypeDiscover, testMAC)},
		{name: "provisioned", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7)), machine: &Machine{ID: "m", State: matchbox.StateProvisioned}},
		{name: "pxe disabled", req: request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE()), machine: &Machine{ID: "m", State: matchbox.StateReady, PXEDisabled: true}},
		{name: "ready machine", req: request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE()), machine: &Machine{ID: "m", State: matchbox.StateReady}, wantFile: "http://10.9.0.1:8080/boot.ipxe"},
		{name: "chain ipxe rom first", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE()), chain: true, wantFile: "undionly.kpxe", wantTFTP: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			machines := fakeMachines{}
			if tc.machine != nil {
				machines[testMAC.String()] = *tc.machine
			}
			s, _ := testServerWith(t, ModeProxy, machines, func(c *Config) { c.ChainIPXE = tc.chain })
			x := &exchange{ctx: context.Background(), s: s, c: classify(tc.req)}
			x.machine, x.known = machines.LookupMachine(context.Background(), x.c.mac, "")
			resp, _ := dhcpv4.NewReplyFromRequest(tc.req)
			resp, stop := bootHandler(x)(tc.req, resp)
			if resp == nil || stop {
				t.Fatal("boot handler dropped the request or stopped the chain")
			}
			if resp.BootFileName != tc.wantFile || x.boot != tc.wantFile {
				t.Errorf("boot file %q, want %q", resp.BootFileName, tc.wantFile)
			}
			if tc.wantFile != "" && resp.BootFileNameOption() != tc.wantFile {
				t.Errorf("option 67 %q, want %q", resp.BootFileNameOption(), tc.wantFile)
			}
			gotTFTP := resp.ServerIPAddr.Equal(ip4(testServer)) && resp.TFTPServerName() == "10.9.0.1" && resp.ServerHostName == "10.9.0.1"
			if gotTFTP != tc.wantTFTP {
				t.Errorf("siaddr %s, option 66 %q, sname %q: TFTP server set = %v, want %v", resp.ServerIPAddr, resp.TFTPServerName(), resp.ServerHostName, gotTFTP, tc.wantTFTP)
			}
			if got := resp.ClassIdentifier() == "HTTPClient"; got != tc.wantHTTP {
				t.Errorf("option 60 %q", resp.ClassIdentifier())
			}
		})
	}
}

// TestChainIPXEServedOnce: a BIOS iPXE ROM and the binary it loads send the
// same request; the second gets the script URL.
func TestChainIPXEServedOnce(t *testing.T) {
	s, _ := testServerWith(t, ModeProxy, nil, func(c *Config) { c.ChainIPXE = true })
	var got []string
	for range 3 {
		req := request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE(), withClass("PXEClient:Arch:00000:UNDI:002001"))
		resp, _ := s.Handle(context.Background(), req, netip.AddrPort{}, ServerPort)
		if resp == nil {
			t.Fatal("no reply")
		}
		got = append(got, resp.BootFileName)
	}
	want := "undionly.kpxe http://10.9.0.1:8080/boot.ipxe http://10.9.0.1:8080/boot.ipxe"
	if strings.Join(got, " ") != want {
		t.Fatalf("boot files %q, want %q", got, want)
	}
}

func TestPXEVendorAndIPXEOptions(t *testing.T) {
	guid := append([]byte{0}, []byte("0123456789abcdef")...)
	req := request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007"),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid)))
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	x := &exchange{ctx: context.Background(), s: s, c: classify(req), boot: "ipxe.efi"}
	resp, _ := dhcpv4.NewReplyFromRequest(req)
	resp, _ = pxeVendorHandler(x)(req, resp)
	if resp.ClassIdentifier() != "PXEClient" || string(resp.Options.Get(dhcpv4.OptionVendorSpecificInformation)) != "\x06\x01\x08\xff" ||
		string(resp.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != string(guid) {
		t.Fatalf("PXE options: %s", resp.Summary())
	}
	if x.c.uuid != "30313233-3435-3637-3839-616263646566" {
		t.Fatalf("uuid %q", x.c.uuid)
	}
	// Without a boot file, nothing.
	x.boot = ""
	resp, _ = dhcpv4.NewReplyFromRequest(req)
	resp, _ = pxeVendorHandler(x)(req, resp)
	if resp.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
		t.Fatal("option 43 without a boot file")
	}
	// iPXE: 175.176 = 1.
	ireq := request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE())
	x = &exchange{ctx: context.Background(), s: s, c: classify(ireq)}
	resp, _ = dhcpv4.NewReplyFromRequest(ireq)
	resp, _ = ipxeHandler(x)(ireq, resp)
	if string(resp.Options.Get(dhcpv4.GenericOptionCode(175))) != "\xb0\x01\x01" {
		t.Fatalf("option 175: %x", resp.Options.Get(dhcpv4.GenericOptionCode(175)))
	}
}

func TestNetworkHandler(t *testing.T) {
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	req := request(dhcpv4.MessageTypeDiscover, testMAC)
	x := &exchange{ctx: context.Background(), s: s, c: classify(req), subnet: testSubnet, router: netip.MustParseAddr("10.9.0.254")}
	resp, _ := dhcpv4.NewReplyFromRequest(req)
	resp, _ = networkHandler(x)(req, resp)
	if resp.SubnetMask().String() != "ffffff00" || resp.Router()[0].String() != "10.9.0.254" ||
		resp.DNS()[0].String() != "10.9.0.53" || resp.DomainName() != "lab" {
		t.Fatalf("network options: %s", resp.Summary())
	}
}

func TestAuthoritativeExchange(t *testing.T) {
	res := netip.MustParseAddr("10.9.0.7")
	resMAC := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}
	s, ev := testServerWith(t, ModeAuthoritative, fakeMachines{resMAC.String(): {ID: "r", State: matchbox.StateReady, IP: res}}, nil)
	ctx := context.Background()
	cases := []struct {
		name   string
		mac    net.HardwareAddr
		wantIP netip.Addr // zero: any address of the range
	}{
		{name: "dynamic", mac: testMAC},
		{name: "reserved", mac: resMAC, wantIP: res},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			offer, dst := s.Handle(ctx, request(dhcpv4.MessageTypeDiscover, tc.mac), netip.AddrPort{}, ServerPort)
			if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("no offer")
			}
			if dst.String() != "255.255.255.255:68" {
				t.Errorf("offer sent to %s", dst)
			}
			ip := addrOf(offer.YourIPAddr)
			if tc.wantIP.IsValid() && ip != tc.wantIP {
				t.Fatalf("offered %s, want %s", ip, tc.wantIP)
			}
			if !tc.wantIP.IsValid() && (ip.Less(netip.MustParseAddr("10.9.0.100")) || netip.MustParseAddr("10.9.0.110").Less(ip)) {
				t.Fatalf("offered %s outside the range", ip)
			}
			req, _ := dhcpv4.NewRequestFromOffer(offer)
			ack, _ := s.Handle(ctx, req, netip.AddrPort{}, ServerPort)
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || addrOf(ack.YourIPAddr) != ip {
				t.Fatalf("ack: %v", ack)
			}
			if ack.IPAddressLeaseTime(0) != time.Hour || !ack.ServerIdentifier().Equal(ip4(testServer)) {
				t.Errorf("ack options: %s", ack.Summary())
			}
			lease, ok := s.cfg.Leases.Lookup(tc.mac.String())
			if !ok || lease.IP != ip || lease.State != LeaseBound {
				t.Errorf("lease after ack: %+v", lease)
			}
		})
	}
	// A REQUEST for an address leased to someone else, or outside our
	// subnet: NAK.
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	for _, ip := range []string{"10.9.0.7", "192.168.1.5"} {
		req := request(dhcpv4.MessageTypeRequest, other, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))))
		nak, _ := s.Handle(ctx, req, netip.AddrPort{}, ServerPort)
		if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("request of %s: %v, want NAK", ip, nak)
		}
	}
	// A REQUEST naming another server: silence.
	req := request(dhcpv4.MessageTypeRequest, other, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.105"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.2"))))
	if resp, _ := s.Handle(ctx, req, netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatalf("answered a request for another server: %s", resp.Summary())
	}
	// INFORM: ACK without address, unicast to the client.
	inform := request(dhcpv4.MessageTypeInform, other, dhcpv4.WithClientIP(net.ParseIP("10.9.0.50")))
	ack, dst := s.Handle(ctx, inform, netip.AddrPort{}, ServerPort)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.IsUnspecified() || dst.String() != "10.9.0.50:68" {
		t.Fatalf("inform: %v to %s", ack, dst)
	}
	if ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Error("lease time in the answer to an INFORM")
	}
	// RELEASE: the lease ends.
	lease, _ := s.cfg.Leases.Lookup(testMAC.String())
	rel := request(dhcpv4.MessageTypeRelease, testMAC, dhcpv4.WithClientIP(ip4(lease.IP)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4(testServer))))
	if resp, _ := s.Handle(ctx, rel, netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatal("answered a RELEASE")
	}
	if l, _ := s.cfg.Leases.Lookup(testMAC.String()); l.State != LeaseReleased {
		t.Fatalf("after release: %+v", l)
	}
	// One event per exchange, named by the answer; an unanswered request is
	// an event of its own type.
	want := "dhcp.offer dhcp.ack dhcp.offer dhcp.ack " +
		"dhcp.nak dhcp.nak dhcp.request dhcp.ack dhcp.release"
	if got := ev.types(); got != want {
		t.Fatalf("events:\n%s\nwant\n%s", got, want)
	}
}

func TestRelay(t *testing.T) {
	s, _ := testServerWith(t, ModeAuthoritative, nil, func(c *Config) {
		c.Ranges = append(c.Ranges, Range{Start: netip.MustParseAddr("10.20.0.10"), End: netip.MustParseAddr("10.20.0.20"),
			Subnet: netip.MustParsePrefix("10.20.0.0/24"), Router: netip.MustParseAddr("10.20.0.1")})
	})
	ctx := context.Background()
	req := request(dhcpv4.MessageTypeDiscover, testMAC, dhcpv4.WithRelay(net.ParseIP("10.20.0.1")))
	offer, dst := s.Handle(ctx, req, netip.MustParseAddrPort("10.20.0.1:67"), ServerPort)
	if offer == nil || dst.String() != "10.20.0.1:67" {
		t.Fatalf("relayed offer %v to %s", offer, dst)
	}
	if ip := addrOf(offer.YourIPAddr); !netip.MustParsePrefix("10.20.0.0/24").Contains(ip) || offer.Router()[0].String() != "10.20.0.1" {
		t.Fatalf("relayed offer: %s", offer.Summary())
	}
	unknown := request(dhcpv4.MessageTypeDiscover, testMAC, dhcpv4.WithRelay(net.ParseIP("172.16.0.1")))
	if resp, _ := s.Handle(ctx, unknown, netip.AddrPort{}, ServerPort); resp != nil {
		t.Fatal("answered a relay of an unknown subnet")
	}
}

func TestProxyMode(t *testing.T) {
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	ctx := context.Background()
	pxe := request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016"))
	offer, _ := s.Handle(ctx, pxe, netip.AddrPort{}, ServerPort)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.IsUnspecified() ||
		offer.BootFileName != "ipxe.efi" || offer.ClassIdentifier() != "PXEClient" || offer.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Fatalf("proxy offer: %v", offer)
	}
	req := request(dhcpv4.MessageTypeRequest, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016"), dhcpv4.WithClientIP(net.ParseIP("10.9.0.40")))
	ack, dst := s.Handle(ctx, req, netip.MustParseAddrPort("10.9.0.40:4011"), ProxyPort)
	// Broadcast on the client's port: the client answers no ARP for the
	// address it has not configured yet.
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || dst.String() != "255.255.255.255:4011" {
		t.Fatalf("proxy ack %v to %s", ack, dst)
	}
	// iPXE ignores a proxy reply's boot file without a next-server address.
	for _, r := range []*dhcpv4.DHCPv4{offer, ack} {
		if r.ServerIPAddr.IsUnspecified() {
			t.Fatalf("proxy %s without siaddr", r.MessageType())
		}
	}
	for _, r := range []*dhcpv4.DHCPv4{request(dhcpv4.MessageTypeDiscover, testMAC), request(dhcpv4.MessageTypeRequest, testMAC, withArch(7), withClass("PXEClient"))} {
		if resp, _ := s.Handle(ctx, r, netip.AddrPort{}, ServerPort); resp != nil {
			t.Fatalf("proxy answered %s", r.Summary())
		}
	}
}

func TestMalformedDropped(t *testing.T) {
	s, _ := testServerWith(t, ModeAuthoritative, nil, nil)
	good := request(dhcpv4.MessageTypeDiscover, testMAC).ToBytes()
	reply := append([]byte{2}, good[1:]...) // BOOTREPLY
	for _, pkt := range [][]byte{nil, {1}, good[:100], good[:239], reply} {
		if resp, _ := s.HandlePacket(context.Background(), pkt, netip.AddrPort{}, ServerPort); resp != nil {
			t.Fatalf("answered a malformed packet of %d bytes", len(pkt))
		}
	}
	if got := testutilCount(s.cfg.Metrics.Dropped(dropMalformed)); got != 5 {
		t.Fatalf("malformed counter %v, want 5", got)
	}
}

func FuzzHandlePacket(f *testing.F) {
	f.Add(request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE()).ToBytes())
	f.Add(request(dhcpv4.MessageTypeRequest, testMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.100")))).ToBytes())
	f.Add(request(dhcpv4.MessageTypeDecline, testMAC).ToBytes())
	f.Add([]byte{1, 1, 6, 0})
	ctx := context.Background()
	s, _ := testServerWith(f, ModeAuthoritative, nil, nil)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		resp, _ := s.HandlePacket(ctx, pkt, netip.AddrPort{}, ServerPort)
		if resp != nil {
			resp.ToBytes()
		}
	})
}

func testutilCount(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
