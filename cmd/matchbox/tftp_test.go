package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"matchbox/dhcp"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	srv := startServer(t, "--data-dir", filepath.Join(dir, "data"), "--tftp-addr", "127.0.0.1:"+strconv.Itoa(port), "--tftp-root", root)

	url := "tftp://127.0.0.1:" + strconv.Itoa(port)
	got, err := exec.Command("curl", "-fsS", "--tftp-blksize", "1468", url+"/undionly.kpxe").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, not the file's %d", len(got), len(want))
	}
	// A read request sent twice from one port, as firmware whose timer
	// fired does: one transfer answers, from one port; /metrics counts
	// the repeat.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rrq := append([]byte{0, 1}, "undionly.kpxe\x00octet\x00blksize\x001024\x00"...)
	for range 2 {
		if _, err := c.WriteToUDP(rrq, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	var read []byte
	tid, strays, last := 0, 0, false
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			if last {
				break
			}
			t.Fatalf("raw read after %d bytes: %v", len(read), err)
		}
		if tid == 0 {
			tid = from.Port
		}
		if from.Port != tid {
			strays++
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case 6: // OACK
			c.WriteToUDP([]byte{0, 4, 0, 0}, from)
		case 3:
			block := binary.BigEndian.Uint16(buf[2:])
			if int(block) == len(read)/1024+1 {
				read = append(read, buf[4:n]...)
			}
			c.WriteToUDP([]byte{0, 4, buf[2], buf[3]}, from)
			last = last || n-4 < 1024
		default:
			t.Fatalf("raw read: packet %q", buf[:n])
		}
	}
	if !bytes.Equal(read, want) || strays != 0 {
		t.Fatalf("request sent twice: read %d of %d bytes, %d packets from a second port", len(read), len(want), strays)
	}
	if _, body := httpGet(t, srv.URL+"/metrics"); !strings.Contains(body, `matchbox_tftp_transfers_total{outcome="duplicate"} 1`) {
		t.Errorf("/metrics does not count one duplicate:\n%s", grepLines(body, "matchbox_tftp"))
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

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
