package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"matchbox/dhcp"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"matchbox/internal/needs"
)

// TestServeTFTP downloads a file from the real binary's TFTP server with
// curl, and checks that an escape is refused.
func TestServeTFTP(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		needs.Skip(t, "curl is not installed (Debian package curl)")
	}
	if out, _ := exec.Command("curl", "--version").Output(); !bytes.Contains(out, []byte("tftp")) {
		needs.Skip(t, "this curl has no tftp:// support")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "tftp")
	os.MkdirAll(root, 0o755)
	want := make([]byte, 300_000)
	rand.Read(want)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644)

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	startServer(t, "--data-dir", filepath.Join(dir, "data"), "--tftp-addr", "127.0.0.1:"+strconv.Itoa(port), "--tftp-root", root)

	url := "tftp://127.0.0.1:" + strconv.Itoa(port)
	got, err := exec.Command("curl", "-fsS", "--tftp-blksize", "1468", url+"/undionly.kpxe").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, not the file's %d", len(got), len(want))
	}
	// --path-as-is: curl sends "../secret" instead of squashing it.
	out, err := exec.Command("curl", "-sS", "--path-as-is", url+"/../secret").CombinedOutput()
	if err == nil || bytes.Contains(out, []byte("secret")) {
		t.Fatalf("escape served: %v %q", err, out)
	}
}

// fakeLeases is a fixed lease table.
type fakeLeases map[netip.Addr]string

func (f fakeLeases) LeaseByIP(_ context.Context, ip netip.Addr) (dhcp.Lease, bool, error) {
	mac, ok := f[ip]
	return dhcp.Lease{IP: ip, MAC: mac}, ok, nil
}

func TestTFTPClients(t *testing.T) {
	seenIP, leasedIP, bothIP, strangerIP := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	seen := map[netip.Addr]string{seenIP: "52:54:00:00:00:01", bothIP: "52:54:00:00:00:03"}
	leases := fakeLeases{leasedIP: "52:54:00:00:00:02", bothIP: "52:54:00:00:00:99"}
	fromDHCP := func(ip netip.Addr) (string, bool) { mac, ok := seen[ip]; return mac, ok }
	tests := []struct {
		name    string
		clients tftpClients
		ip      netip.Addr
		wantMAC string
		wantOK  bool
	}{
		{"seen by DHCP", tftpClients{fromDHCP, leases}, seenIP, "52:54:00:00:00:01", true},
		{"leased before a restart", tftpClients{fromDHCP, leases}, leasedIP, "52:54:00:00:00:02", true},
		{"DHCP's notes win over the stored lease", tftpClients{fromDHCP, leases}, bothIP, "52:54:00:00:00:03", true},
		{"DHCP off: stored lease", tftpClients{nil, leases}, leasedIP, "52:54:00:00:00:02", true},
		{"unknown address", tftpClients{fromDHCP, leases}, strangerIP, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mac, ok, err := tc.clients.mac(context.Background(), tc.ip)
			if err != nil || mac != tc.wantMAC || ok != tc.wantOK {
				t.Fatalf("mac(%s) = %q, %v, %v; want %q, %v", tc.ip, mac, ok, err, tc.wantMAC, tc.wantOK)
			}
		})
	}
}
