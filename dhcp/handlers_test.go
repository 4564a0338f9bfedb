package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// answer is what the tests read of a reply: each field as text, empty when
// the reply lacks it, so that cases compare whole answers with cmp.Diff.
type answer struct {
	Type       string // message type; "" when there is no reply
	Dst        string // where it goes
	YourIP     string // yiaddr
	NextServer string // siaddr
	SName      string // BOOTP server name
	File       string // BOOTP file
	BootFile   string // option 67
	TFTPServer string // option 66
	Class      string // option 60
	ServerID   string // option 54
	LeaseTime  time.Duration
	Mask       string
	Router     string
	DNS        string
	Domain     string
	Vendor     string // option 43, hex
	GUID       string // option 97, hex
	IPXE       string // option 175, hex
}

func summarize(r *dhcpv4.DHCPv4, dst netip.AddrPort) answer {
	if r == nil {
		return answer{}
	}
	addr := func(ip net.IP) string {
		if a := addrOf(ip); a.IsValid() {
			return a.String()
		}
		return ""
	}
	opt := func(code dhcpv4.OptionCode) string {
		if v := r.Options.Get(code); v != nil {
			return fmt.Sprintf("%x", v)
		}
		return ""
	}
	a := answer{
		Type: r.MessageType().String(), YourIP: addr(r.YourIPAddr), NextServer: addr(r.ServerIPAddr),
		SName: r.ServerHostName, File: r.BootFileName, BootFile: r.BootFileNameOption(), TFTPServer: r.TFTPServerName(),
		Class: r.ClassIdentifier(), ServerID: addr(r.ServerIdentifier()), LeaseTime: r.IPAddressLeaseTime(0),
		Domain: r.DomainName(), Vendor: opt(dhcpv4.OptionVendorSpecificInformation),
		GUID: opt(dhcpv4.OptionClientMachineIdentifier), IPXE: opt(dhcpv4.GenericOptionCode(175)),
	}
	if dst.IsValid() {
		a.Dst = dst.String()
	}
	if m := r.SubnetMask(); m != nil {
		a.Mask = net.IP(m).String()
	}
	if rs := r.Router(); len(rs) > 0 {
		a.Router = rs[0].String()
	}
	if ds := r.DNS(); len(ds) > 0 {
		a.DNS = ds[0].String()
	}
	return a
}

func TestBootHandler(t *testing.T) {
	// The boot parts of an answer: the file, how it is fetched.
	const server = "10.9.0.1"
	tftp := func(file string) answer {
		return answer{File: file, BootFile: file, NextServer: server, TFTPServer: server, SName: server}
	}
	http := func(url string) answer { return answer{File: url, BootFile: url, NextServer: server} }
	cases := []struct {
		name    string
		req     *dhcpv4.DHCPv4
		machine *Machine
		chain   bool
		want    answer
	}{
		{name: "bios pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withClass("PXEClient:Arch:00000:UNDI:002001")), want: tftp("undionly.kpxe")},
		{name: "uefi pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016")), want: tftp("snponly.efi")},
		{name: "arm64 pxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(11)), want: tftp("arm64/snponly.efi")},
		{name: "ipxe", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE()), want: http("http://10.9.0.1:8080/boot.ipxe")},
		{name: "http boot", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(16), withClass("HTTPClient:Arch:00016:UNDI:003001")),
			want: answer{File: "http://10.9.0.1:8080/assets/tftp/snponly.efi", BootFile: "http://10.9.0.1:8080/assets/tftp/snponly.efi", NextServer: server, Class: "HTTPClient"}},
		{name: "not netboot", req: request(dhcpv4.MessageTypeDiscover, testMAC)},
		{name: "provisioned", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7)), machine: &Machine{ID: "m", State: matchbox.StateProvisioned}},
		{name: "pxe disabled", req: request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE()), machine: &Machine{ID: "m", State: matchbox.StateReady, PXEDisabled: true}},
		{name: "ready machine", req: request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE()), machine: &Machine{ID: "m", State: matchbox.StateReady}, want: http("http://10.9.0.1:8080/boot.ipxe")},
		{name: "chain ipxe rom first", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(0), withIPXE()), chain: true, want: tftp("undionly.kpxe")},
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
			if x.boot != tc.want.File {
				t.Errorf("exchange's boot file %q, want %q", x.boot, tc.want.File)
			}
			got := summarize(resp, netip.AddrPort{})
			got.Type, got.LeaseTime = "", 0 // the reply as built before the lease handler
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("boot answer (-want +got):\n%s", diff)
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
	pxe := request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007"),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid)))
	ipxe := request(dhcpv4.MessageTypeDiscover, testMAC, withIPXE())
	cases := []struct {
		name     string
		req      *dhcpv4.DHCPv4
		boot     string
		handler  func(*exchange) Handler
		want     answer
		wantUUID string
	}{
		{name: "pxe with a boot file", req: pxe, boot: "ipxe.efi", handler: pxeVendorHandler,
			want:     answer{Class: "PXEClient", Vendor: "060108ff", GUID: fmt.Sprintf("%x", guid)},
			wantUUID: "30313233-3435-3637-3839-616263646566"},
		{name: "pxe without a boot file", req: pxe, handler: pxeVendorHandler, wantUUID: "30313233-3435-3637-3839-616263646566"},
		{name: "ipxe: no proxyDHCP wait (175.176 = 1)", req: ipxe, handler: ipxeHandler, want: answer{IPXE: "b00101"}},
	}
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := &exchange{ctx: context.Background(), s: s, c: classify(tc.req), boot: tc.boot}
			resp, _ := dhcpv4.NewReplyFromRequest(tc.req)
			resp, _ = tc.handler(x)(tc.req, resp)
			got := summarize(resp, netip.AddrPort{})
			got.Type = ""
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if x.c.uuid != tc.wantUUID {
				t.Errorf("uuid %q, want %q", x.c.uuid, tc.wantUUID)
			}
		})
	}
}

func TestNetworkHandler(t *testing.T) {
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	req := request(dhcpv4.MessageTypeDiscover, testMAC)
	x := &exchange{ctx: context.Background(), s: s, c: classify(req), subnet: testSubnet, router: netip.MustParseAddr("10.9.0.254")}
	resp, _ := dhcpv4.NewReplyFromRequest(req)
	resp, _ = networkHandler(x)(req, resp)
	got := summarize(resp, netip.AddrPort{})
	got.Type = ""
	want := answer{Mask: "255.255.255.0", Router: "10.9.0.254", DNS: "10.9.0.53", Domain: "lab"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("network options (-want +got):\n%s", diff)
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
			want := answer{Type: "ACK", Dst: "255.255.255.255:68", YourIP: ip.String(), ServerID: "10.9.0.1", LeaseTime: time.Hour,
				Mask: "255.255.255.0", Router: "10.9.0.254", DNS: "10.9.0.53", Domain: "lab"}
			if diff := cmp.Diff(want, summarize(s.Handle(ctx, req, netip.AddrPort{}, ServerPort))); diff != "" {
				t.Fatalf("ack (-want +got):\n%s", diff)
			}
			lease, ok := s.cfg.Leases.Lookup(tc.mac.String())
			if !ok || lease.IP != ip || lease.State != LeaseBound {
				t.Errorf("lease after ack: %+v", lease)
			}
		})
	}
	// Requests that get no lease: NAK, silence, or an ACK without address.
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	requested := func(ip string) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
	nak := answer{Type: "NAK", Dst: "255.255.255.255:68", ServerID: "10.9.0.1"}
	noLease := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want answer
	}{
		{"address leased to another MAC: NAK", request(dhcpv4.MessageTypeRequest, other, requested("10.9.0.7")), nak},
		{"address outside the subnet: NAK", request(dhcpv4.MessageTypeRequest, other, requested("192.168.1.5")), nak},
		{"request naming another server: silence", request(dhcpv4.MessageTypeRequest, other, requested("10.9.0.105"),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.2")))), answer{}},
		{"inform: ACK without address or lease time, unicast", request(dhcpv4.MessageTypeInform, other, dhcpv4.WithClientIP(net.ParseIP("10.9.0.50"))),
			answer{Type: "ACK", Dst: "10.9.0.50:68", ServerID: "10.9.0.1", Mask: "255.255.255.0", Router: "10.9.0.254", DNS: "10.9.0.53", Domain: "lab"}},
	}
	for _, tc := range noLease {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(s.Handle(ctx, tc.req, netip.AddrPort{}, ServerPort))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
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
	cases := []struct {
		name string
		req  *dhcpv4.DHCPv4
		peer netip.AddrPort
		want answer
	}{
		{"relay of a subnet with a range: an address of that range, back to the relay",
			request(dhcpv4.MessageTypeDiscover, testMAC, dhcpv4.WithRelay(net.ParseIP("10.20.0.1"))), netip.MustParseAddrPort("10.20.0.1:67"),
			answer{Type: "OFFER", Dst: "10.20.0.1:67", YourIP: "10.20.0.10", ServerID: "10.9.0.1", LeaseTime: time.Hour,
				Mask: "255.255.255.0", Router: "10.20.0.1", DNS: "10.9.0.53", Domain: "lab"}},
		{"relay of an unknown subnet: silence",
			request(dhcpv4.MessageTypeDiscover, testMAC, dhcpv4.WithRelay(net.ParseIP("172.16.0.1"))), netip.AddrPort{}, answer{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, summarize(s.Handle(ctx, tc.req, tc.peer, ServerPort))); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyMode(t *testing.T) {
	s, _ := testServerWith(t, ModeProxy, nil, nil)
	ctx := context.Background()
	// Boot information only: no address, no lease time, no network
	// options, and a next-server address (iPXE ignores a proxy reply's boot
	// file without one).
	boot := answer{NextServer: "10.9.0.1", SName: "10.9.0.1", File: "snponly.efi", BootFile: "snponly.efi", TFTPServer: "10.9.0.1",
		Class: "PXEClient", ServerID: "10.9.0.1", Vendor: "060108ff"}
	with := func(a answer, typ, dst string) answer { a.Type, a.Dst = typ, dst; return a }
	cases := []struct {
		name string
		req  *dhcpv4.DHCPv4
		peer netip.AddrPort
		port int
		want answer
	}{
		{name: "pxe discover: offer", req: request(dhcpv4.MessageTypeDiscover, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016")),
			port: ServerPort, want: with(boot, "OFFER", "255.255.255.255:68")},
		// Broadcast on the client's port: the client answers no ARP for
		// the address it has not configured yet.
		{name: "pxe request on 4011: broadcast ack", req: request(dhcpv4.MessageTypeRequest, testMAC, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016"), dhcpv4.WithClientIP(net.ParseIP("10.9.0.40"))),
			peer: netip.MustParseAddrPort("10.9.0.40:4011"), port: ProxyPort, want: with(boot, "ACK", "255.255.255.255:4011")},
		{name: "plain discover: silence", req: request(dhcpv4.MessageTypeDiscover, testMAC), port: ServerPort},
		{name: "request on 67: silence", req: request(dhcpv4.MessageTypeRequest, testMAC, withArch(7), withClass("PXEClient")), port: ServerPort},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(s.Handle(ctx, tc.req, tc.peer, tc.port))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
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

// TestBootFilePerArchitecture runs the authoritative server's whole chain on
// a PXE firmware's DISCOVER of each architecture (option 93): x86-64 UEFI
// gets snponly.efi by default and whatever Config.BootFiles names for its
// architecture, other architectures keeping theirs.
func TestBootFilePerArchitecture(t *testing.T) {
	ipxeEFI := map[iana.Arch]string{7: "ipxe.efi"}
	cases := []struct {
		name  string
		arch  iana.Arch
		class string
		files map[iana.Arch]string
		want  string
	}{
		{"bios", 0, "PXEClient:Arch:00000:UNDI:002001", nil, "undionly.kpxe"},
		{"uefi ia32", 6, "PXEClient:Arch:00006:UNDI:003016", nil, "ipxe.efi"},
		{"uefi x86-64", 7, "PXEClient:Arch:00007:UNDI:003016", nil, "snponly.efi"},
		{"uefi x86-64 efi bc", 9, "PXEClient:Arch:00009:UNDI:003016", nil, "snponly.efi"},
		{"uefi arm64", 11, "PXEClient:Arch:00011:UNDI:003016", nil, "arm64/snponly.efi"},
		{"uefi x86-64 http boot", 16, "HTTPClient:Arch:00016:UNDI:003001", nil, "http://10.9.0.1:8080/assets/tftp/snponly.efi"},
		{"uefi x86-64, ipxe.efi chosen", 7, "PXEClient:Arch:00007:UNDI:003016", ipxeEFI, "ipxe.efi"},
		{"bios, x86-64 uefi overridden", 0, "PXEClient:Arch:00000:UNDI:002001", ipxeEFI, "undionly.kpxe"},
		{"efi bc, only arch 7 overridden", 9, "PXEClient:Arch:00009:UNDI:003016", ipxeEFI, "snponly.efi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := testServerWith(t, ModeAuthoritative, fakeMachines{}, func(c *Config) { c.BootFiles = tc.files })
			req := request(dhcpv4.MessageTypeDiscover, testMAC, withArch(tc.arch), withClass(tc.class))
			resp, _ := s.Handle(context.Background(), req, netip.AddrPort{}, ServerPort)
			if resp == nil {
				t.Fatal("no OFFER")
			}
			if resp.MessageType() != dhcpv4.MessageTypeOffer || resp.YourIPAddr.IsUnspecified() {
				t.Fatalf("answer %s for %s, want an OFFER with an address", resp.MessageType(), resp.YourIPAddr)
			}
			if resp.BootFileName != tc.want || resp.BootFileNameOption() != tc.want {
				t.Errorf("boot file %q (option 67 %q), want %q", resp.BootFileName, resp.BootFileNameOption(), tc.want)
			}
		})
	}
}

// TestRequestForAnotherServerWithdrawsOffer: a REQUEST naming another
// server after our OFFER gets silence, and our offer is withdrawn (its
// address free again at once, not held for the offer's lifetime).
func TestRequestForAnotherServerWithdrawsOffer(t *testing.T) {
	s, _ := testServerWith(t, ModeAuthoritative, fakeMachines{}, nil)
	ctx := context.Background()
	chooser := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}
	offer, _ := s.Handle(ctx, request(dhcpv4.MessageTypeDiscover, chooser), netip.AddrPort{}, ServerPort)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatal("no offer")
	}
	if held, ok := s.cfg.Leases.Lookup(chooser.String()); !ok || held.State != LeaseOffered {
		t.Fatalf("after the offer the MAC holds %+v, want an offer", held)
	}
	req := request(dhcpv4.MessageTypeRequest, chooser,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.2"))))
	if got := summarize(s.Handle(ctx, req, netip.AddrPort{}, ServerPort)); got != (answer{}) {
		t.Errorf("answer to a REQUEST naming another server: %+v, want silence", got)
	}
	if held, ok := s.cfg.Leases.Lookup(chooser.String()); ok {
		t.Errorf("the offer is still held after the client chose another server: %+v", held)
	}
}
