package dhcp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"matchbox/matchbox"

	"matchbox/internal/netnstest"
)

// lab is a pair of network namespaces joined by a veth pair: the server
// side "vS" holds 10.9.0.1/24, the client side "vC" no address.
type lab struct {
	srv, cli string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	p := netnstest.NewPair(t, "dhcp", "10.9.0.1/24")
	return &lab{srv: p.Server, cli: p.Client}
}

// startServer runs a server on vS in the lab's server namespace until the
// test ends or stop is called.
func (l *lab) startServer(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	cfg.Interface = "vS"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := netnstest.Do(l.srv, s.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// udhcpc runs busybox udhcpc on vC with extra arguments and returns the
// variables its script saw on "bound".
func (l *lab) udhcpc(t *testing.T, args ...string) map[string]string {
	t.Helper()
	vars, err := netnstest.Udhcpc(t, l.cli, netnstest.ClientIface, append([]string{"-t", "4", "-T", "1"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

func (l *lab) setClientMAC(t *testing.T, mac string) {
	t.Helper()
	netnstest.IP(t, "-n", l.cli, "link", "set", "vC", "address", mac)
}

func labConfig(mode string, leases Leases, machines MachineLookup) Config {
	return Config{
		Mode: mode, LeaseTime: time.Hour, BootURL: "http://10.9.0.1:8080", Leases: leases, Machines: machines,
		Ranges: []Range{{Start: netip.MustParseAddr("10.9.0.100"), End: netip.MustParseAddr("10.9.0.150")}},
		Router: netip.MustParseAddr("10.9.0.1"),
	}
}

func openLabLeases(t *testing.T, storage LeaseStorage) *Allocator {
	t.Helper()
	l, err := OpenAllocator(context.Background(), AllocatorConfig{Ranges: LeaseRanges(labConfig(ModeAuthoritative, nil, nil).Ranges), Storage: storage})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestUdhcpcAuthoritative: a real udhcpc gets an address over a veth, keeps
// it across a server restart, gets its reservation, and gets the boot file
// that suits the options it sends.
func TestUdhcpcAuthoritative(t *testing.T) {
	l := newLab(t)
	const clientMAC, reservedMAC = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
	l.setClientMAC(t, clientMAC)
	machines := fakeMachines{reservedMAC: {ID: "r1", State: matchbox.StateReady, IP: netip.MustParseAddr("10.9.0.7")}}
	storage := newMemStorage()

	leases := openLabLeases(t, storage)
	stop := l.startServer(t, labConfig(ModeAuthoritative, leases, machines))
	first := l.udhcpc(t)
	ip, err := netip.ParseAddr(first["ip"])
	if err != nil || ip.Less(netip.MustParseAddr("10.9.0.100")) || netip.MustParseAddr("10.9.0.150").Less(ip) {
		t.Fatalf("udhcpc got %q, want an address of 10.9.0.100-150", first["ip"])
	}
	if first["router"] != "10.9.0.1" || first["subnet"] != "255.255.255.0" || first["serverid"] != "10.9.0.1" {
		t.Errorf("udhcpc options: router %q subnet %q serverid %q", first["router"], first["subnet"], first["serverid"])
	}
	stored, err := leases.List(context.Background())
	if err != nil || len(stored) != 1 || stored[0].IP != ip || stored[0].MAC != clientMAC {
		t.Fatalf("stored leases %+v %v, want %s for %s", stored, err, ip, clientMAC)
	}

	// Restart: the same address again.
	stop()
	leases.Close()
	leases = openLabLeases(t, storage)
	t.Cleanup(func() { leases.Close() })
	l.startServer(t, labConfig(ModeAuthoritative, leases, machines))
	if again := l.udhcpc(t); again["ip"] != ip.String() {
		t.Fatalf("after restart udhcpc got %q, want %s", again["ip"], ip)
	}

	// Boot files by the options the client sends.
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bios", []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}, "undionly.kpxe"},
		{"uefi", []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"}, "snponly.efi"},
		{"ipxe", []string{"-x", "0x4d:69505845", "-x", "0x5d:0000"}, "http://10.9.0.1:8080/boot.ipxe"},
		{"http", []string{"-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"}, "http://10.9.0.1:8080/assets/tftp/snponly.efi"},
		{"plain", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := l.udhcpc(t, tc.args...)
			if got["boot_file"] != tc.want {
				t.Errorf("boot_file %q, want %q", got["boot_file"], tc.want)
			}
			if tc.want == "undionly.kpxe" && got["siaddr"] != "10.9.0.1" {
				t.Errorf("siaddr %q, want 10.9.0.1", got["siaddr"])
			}
		})
	}

	// The reserved MAC gets its reservation.
	l.setClientMAC(t, reservedMAC)
	if got := l.udhcpc(t); got["ip"] != "10.9.0.7" {
		t.Fatalf("reserved MAC got %q, want 10.9.0.7", got["ip"])
	}
}

// TestProxyAnswersPXE: in proxy mode, a PXE DISCOVER sent over the veth gets
// a boot file and no address; a plain DISCOVER gets nothing.
func TestProxyAnswersPXE(t *testing.T) {
	l := newLab(t)
	l.startServer(t, labConfig(ModeProxy, nil, nil))
	var conn *net.UDPConn
	if err := netnstest.Do(l.cli, func() error {
		var err error
		conn, err = server4.NewIPv4UDPConn("vC", &net.UDPAddr{Port: ClientPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ifi := func() net.HardwareAddr {
		var hw net.HardwareAddr
		netnstest.Do(l.cli, func() error {
			i, err := net.InterfaceByName("vC")
			if err == nil {
				hw = i.HardwareAddr
			}
			return err
		})
		return hw
	}()
	exchange := func(d *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		if _, err := conn.WriteTo(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: ServerPort}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return nil
			}
			if r, err := dhcpv4.FromBytes(buf[:n]); err == nil && r.TransactionID == d.TransactionID {
				return r
			}
		}
	}
	pxe := request(dhcpv4.MessageTypeDiscover, ifi, withArch(7), withClass("PXEClient:Arch:00007:UNDI:003016"))
	offer := exchange(pxe)
	if offer == nil {
		t.Fatal("no proxy offer to a PXE DISCOVER")
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "snponly.efi" || offer.ClassIdentifier() != "PXEClient" ||
		!offer.ServerIPAddr.Equal(net.ParseIP("10.9.0.1")) {
		t.Fatalf("proxy offer: %s", offer.Summary())
	}
	if r := exchange(request(dhcpv4.MessageTypeDiscover, ifi)); r != nil {
		t.Fatalf("proxy answered a plain DISCOVER: %s", r.Summary())
	}
}
