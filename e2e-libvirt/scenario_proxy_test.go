package e2elibvirt

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dhcpHostCIDR is the address of the DHCP server's host in the proxy
// scenario.
const dhcpHostCIDR = "10.99.0.2/24"

// TestProxyDHCP is scenario 3: dnsmasq is the network's DHCP server
// (addresses only, no boot options) and matchbox runs as proxyDHCP, giving
// the boot information only. The same machines as scenario 1 must boot to
// their configs.
func TestProxyDHCP(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	specs := withMACs(3, knownVMs)
	dataDir := filepath.Join(l.Dir, "data")
	writeDataDir(t, dataDir, bootBase, "proxy", nodesOf(specs))
	_, help := buildMatchbox(t)
	// The DHCP server is another host on the segment (iPXE skips a
	// ProxyDHCP offer whose server identifier is its DHCP server's own).
	ra := dnsmasqOptions{}
	if !hasTFTP(help) {
		ra.TFTPRoot = tftpRoot
	}
	l.startDnsmasq(t, "dnsmasq-ra", ra)
	dhcpHost := l.NS.AddPeerHost(t, dhcpHostCIDR)
	l.startDnsmasq(t, "dnsmasq-dhcp", dnsmasqOptions{DHCP: true, Host: dhcpHost})
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "proxy"})
	bootAll(t, l, "proxy", specs, func(t *testing.T, spec vmSpec) {
		want := []string{"dhcp."}
		if spec.NativePXE && srv.TFTP {
			want = append(want, "tftp")
		}
		want = append(want, "http.ipxe", "http.ignition", "http.generic")
		assertTimeline(t, srv, spec.MAC, want)
		assertNoLeaseStored(t, srv, l, spec.MAC)
	})
}

// assertNoLeaseStored checks that a proxyDHCP matchbox left the addresses
// to the network's DHCP server: its store holds no lease for mac, while
// dnsmasq's lease file (dnsmasq-dhcp.leases) does.
func assertNoLeaseStored(t *testing.T, s *matchboxServer, l *lab, mac string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := s.getJSON(ctx, "/api/v1/leases?mac="+url.QueryEscape(mac), &page); err != nil {
		t.Fatalf("matchbox's leases of %s: %v", mac, err)
	}
	if len(page.Items) != 0 {
		t.Fatalf("proxyDHCP matchbox stored leases for %s: %s", mac, page.Items)
	}
	if err := s.getJSON(ctx, "/api/v1/leases", &page); err != nil || len(page.Items) != 0 {
		t.Fatalf("proxyDHCP matchbox stored leases: %s (%v)", page.Items, err)
	}
	b, err := os.ReadFile(filepath.Join(l.Dir, "dnsmasq-dhcp.leases"))
	if err != nil {
		t.Fatalf("dnsmasq's lease file: %v", err)
	}
	if !strings.Contains(strings.ToLower(string(b)), strings.ToLower(mac)) {
		t.Fatalf("dnsmasq's lease file has no lease of %s:\n%s", mac, b)
	}
}
