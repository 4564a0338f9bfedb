package e2elibvirt

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBaseline boots scenario 1's VMs without matchbox: dnsmasq gives
// addresses, the boot file and TFTP, and busybox httpd serves a static
// boot script, the same kernel and initrd and a static config per MAC. The
// run's summary compares matchbox's boot times with these.
func TestBaseline(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	specs := withMACs(1, knownVMs)
	root := filepath.Join(l.Dir, "www")
	tftpRoot := writeAssets(t, filepath.Join(root, "assets"), tos)
	writeStaticBoot(t, root, specs)
	l.startDnsmasq(t, "dnsmasq", dnsmasqOptions{
		TFTPRoot: tftpRoot,
		DHCP:     true,
		Extra: []string{
			"--dhcp-userclass=set:ipxe,iPXE",
			"--dhcp-match=set:efi64,option:client-arch,7",
			"--dhcp-boot=tag:ipxe," + bootBase + "/boot.ipxe",
			"--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
			"--dhcp-option=tag:ipxe,encap:175,176,1b",
		},
	})
	logPath := filepath.Join(l.Dir, "httpd.log")
	startProcess(t, "busybox httpd", l.NS.Command("busybox", "httpd", "-f", "-vv", "-p", serverIP+":"+httpPort, "-h", root), logPath, time.Second)
	l.keep("httpd.log")
	time.Sleep(200 * time.Millisecond)
	bootAll(t, l, "baseline", specs, nil)
}

// writeStaticBoot writes the baseline's web root: boot.ipxe (what
// matchbox's /ipxe renders for the test OS profile), a config per MAC and
// the done file.
func writeStaticBoot(t testing.TB, root string, specs []vmSpec) {
	t.Helper()
	args := []string{"initrd=initramfs.cpio.gz", "console=ttyS0,115200n8", "panic=-1", "quiet",
		"matchbox.config=" + bootBase + "/ignition/${mac:hexhyp}.json",
		"matchbox.done=" + bootBase + "/done.txt"}
	mustWrite(t, filepath.Join(root, "boot.ipxe"), fmt.Sprintf("#!ipxe\nkernel %s/assets/testos/vmlinuz %s\ninitrd %s/assets/testos/initramfs.cpio.gz\nboot\n",
		bootBase, strings.Join(args, " "), bootBase))
	for _, s := range specs {
		cfg := fmt.Sprintf(`{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,%s"}}]}}`, s.Name)
		mustWrite(t, filepath.Join(root, "ignition", strings.ReplaceAll(s.MAC, ":", "-")+".json"), cfg+"\n")
	}
	mustWrite(t, filepath.Join(root, "done.txt"), "done\n")
}
