package e2elibvirt

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
// DHCP, TFTP and HTTP steps in order. Only matchbox serves TFTP here
// (dnsmasq sends router advertisements alone): a firmware PXE machine's
// iPXE binary must be on its timeline as a whole file matchbox sent, and
// on matchbox's TFTP metrics.
func TestKnownMachine(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	specs := withMACs(1, knownVMs)
	dataDir := filepath.Join(l.Dir, "data")
	writeDataDir(t, dataDir, bootBase, "known", nodesOf(specs))
	_, help := buildMatchbox(t)
	if !hasTFTP(help) {
		t.Fatal("matchbox serve has no --tftp-addr: this scenario needs matchbox's own TFTP server (dnsmasq's stays off)")
	}
	l.startDnsmasq(t, "dnsmasq-ra", dnsmasqOptions{}) // no TFTPRoot: dnsmasq's TFTP is off
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "authoritative"})
	bootAll(t, l, "known", specs, func(t *testing.T, spec vmSpec) {
		evs := assertTimeline(t, srv, spec.MAC, knownTimeline(spec, srv.TFTP))
		if spec.NativePXE {
			assertTFTPByMatchbox(t, srv, evs, tftpRoot)
		}
		assertServedIgnition(t, srv, spec.MAC)
	})
}

// assertTFTPByMatchbox checks that matchbox, not another server, sent a
// machine its iPXE binary over TFTP: its timeline (evs) holds a tftp.read
// of a file of tftpRoot with all of the file's bytes, and matchbox's
// /metrics count a successful transfer and at least those bytes.
func assertTFTPByMatchbox(t *testing.T, s *matchboxServer, evs []event, tftpRoot string) {
	t.Helper()
	var read []string
	var size int64
	for _, e := range evs {
		if e.Type != "tftp.read" {
			continue
		}
		file, _ := e.Detail["file"].(string)
		sent, _ := e.Detail["bytes"].(float64)
		read = append(read, fmt.Sprintf("%s (%v bytes)", file, e.Detail["bytes"]))
		st, err := os.Stat(filepath.Join(tftpRoot, filepath.Base(file)))
		if err == nil && file != "" && int64(sent) == st.Size() {
			size = st.Size()
			break
		}
	}
	if size == 0 {
		t.Fatalf("no whole file of %s sent by matchbox's TFTP on the timeline; tftp.read events: %v", tftpRoot, read)
	}
	ok, _ := strconv.ParseFloat(metricLine(t, s, `matchbox_tftp_transfers_total{outcome="ok"}`), 64)
	bytes, _ := strconv.ParseFloat(metricLine(t, s, "matchbox_tftp_bytes_total"), 64)
	if ok < 1 || int64(bytes) < size {
		t.Fatalf("matchbox's /metrics: %v successful TFTP transfers, %v bytes; want at least 1 and %d", ok, bytes, size)
	}
	t.Logf("TFTP by matchbox: %s; /metrics: %v transfers ok, %v bytes", read, ok, bytes)
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
