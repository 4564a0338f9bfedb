package e2elibvirt

import (
	"path/filepath"
	"testing"
)

// knownVMs are scenario 1's machines: BIOS with the NIC ROM's iPXE
// (e1000), and UEFI with the firmware's own PXE (virtio-net without
// option ROM: DHCP, TFTP of the iPXE binary, then iPXE).
var knownVMs = []vmSpec{
	{Name: "bios-e1000", Firmware: firmwareBIOS, NIC: "e1000"},
	{Name: "uefi-virtio-pxe", Firmware: firmwareUEFI, NIC: "virtio", NativePXE: true},
}

// TestKnownMachine is scenario 1: machines declared by MAC in matchbox's
// data directory, powered on through their BMCs, boot through matchbox's
// DHCP, TFTP and HTTP into the test OS, which fetches its own first-boot
// config and reports done. The timelines in matchbox's store must show the
// DHCP, TFTP and HTTP steps in order.
func TestKnownMachine(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	specs := withMACs(1, knownVMs)
	dataDir := filepath.Join(l.Dir, "data")
	writeDataDir(t, dataDir, bootBase, "known", nodesOf(specs))
	_, help := buildMatchbox(t)
	dns := dnsmasqOptions{}
	if !hasTFTP(help) {
		dns.TFTPRoot = tftpRoot
	}
	l.startDnsmasq(t, "dnsmasq-ra", dns)
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "authoritative"})
	bootAll(t, l, "known", specs, func(t *testing.T, spec vmSpec) {
		assertTimeline(t, srv, spec.MAC, knownTimeline(spec, srv.TFTP))
		assertServedIgnition(t, srv, spec.MAC)
	})
}

// hasTFTP reports whether matchbox serve has its own TFTP server.
func hasTFTP(serveHelp string) bool { return containsFlag(serveHelp, "--tftp-addr") }

// knownTimeline is the expected order of events of a known machine's boot:
// the NIC ROM's iPXE gets its address and boot.ipxe from DHCP, fetches
// /ipxe, then the test OS gets its own lease and fetches its config and
// reports done. Firmware PXE first gets the iPXE binary over TFTP.
func knownTimeline(spec vmSpec, matchboxTFTP bool) []string {
	var want []string
	if spec.NativePXE {
		want = append(want, "dhcp.offer", "dhcp.ack")
		if matchboxTFTP {
			want = append(want, "tftp")
		}
	}
	return append(want, "dhcp.offer", "dhcp.ack", "http.ipxe", "dhcp.ack", "http.ignition", "http.generic")
}
