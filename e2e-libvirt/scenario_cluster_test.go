package e2elibvirt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/internal/needs"
)

// clusterExample is the example data directory scenario 4 boots.
const clusterExample = "examples/flatcar-etcd3"

// clusterVMs are the example's three etcd members (MACs from its groups),
// on different firmware and NICs.
var clusterVMs = []vmSpec{
	{Name: "node1", Hostname: "node1.example.com", Firmware: firmwareBIOS, NIC: "e1000", MAC: "52:54:00:a1:9c:ae"},
	{Name: "node2", Hostname: "node2.example.com", Firmware: firmwareBIOS, NIC: "virtio", MAC: "52:54:00:b2:2f:86"},
	{Name: "node3", Hostname: "node3.example.com", Firmware: firmwareUEFI, NIC: "e1000", MAC: "52:54:00:c3:61:77"},
}

// clusterProfile replaces the example's Flatcar profile: same id and
// Ignition template, the test OS as kernel and initrd (Flatcar's images
// cannot be fetched here), the config URL on the segment.
const clusterProfile = `id: etcd3
name: etcd3 member (end-to-end test OS)
boot:
  kernel: /assets/testos/vmlinuz
  initrd:
    - /assets/testos/initramfs.cpio.gz
  args:
ARGS
ignition_id: etcd3.yaml
generic_id: done.txt
`

// TestCluster is scenario 4: the three-node etcd cluster of
// examples/flatcar-etcd3 (groups and Butane template unchanged) boots, each
// node fetching its own rendered config (its host name from the group's
// metadata).
func TestCluster(t *testing.T) {
	l := newLab(t)
	example := filepath.Join(repoRoot(t), clusterExample)
	if _, err := os.Stat(filepath.Join(example, "groups")); err != nil {
		needs.Skipf(t, "%s not present: %v", clusterExample, err)
	}
	tos := buildTestOS(t)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	dataDir := filepath.Join(l.Dir, "data")
	for _, sub := range []string{"groups", "ignition"} {
		entries, err := os.ReadDir(filepath.Join(example, sub))
		if err != nil {
			t.Fatalf("example: %v", err)
		}
		for _, e := range entries {
			mustCopy(t, filepath.Join(example, sub, e.Name()), filepath.Join(dataDir, sub, e.Name()))
		}
	}
	var args strings.Builder
	for _, a := range bootArgs(bootBase) {
		args.WriteString("    - \"" + a + "\"\n")
	}
	mustWrite(t, filepath.Join(dataDir, "profiles", "etcd3.yaml"), strings.Replace(clusterProfile, "ARGS\n", args.String(), 1))
	mustWrite(t, filepath.Join(dataDir, "generic", "done.txt"), genericDone)

	_, help := buildMatchbox(t)
	dns := dnsmasqOptions{}
	if !hasTFTP(help) {
		dns.TFTPRoot = tftpRoot
	}
	l.startDnsmasq(t, "dnsmasq-ra", dns)
	srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "authoritative"})
	bootAll(t, l, "cluster", clusterVMs, func(t *testing.T, spec vmSpec) {
		assertTimeline(t, srv, spec.MAC, knownTimeline(spec, srv.TFTP))
	})
}
