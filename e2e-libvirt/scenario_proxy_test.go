package e2elibvirt

import (
	"path/filepath"
	"testing"
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
	})
}
