package e2elibvirt

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"matchbox/internal/needs"
)

// requiredTools are the programs every scenario needs (Debian packages in
// apt-packages).
var requiredTools = []string{
	"ip", "qemu-system-x86_64", "dnsmasq", "ipmi_sim", "ipmitool", "busybox",
	"cpio", "gzip", "dpkg-deb", "apt-get", "go",
}

// requiredFiles are firmware and boot binaries the scenarios use.
var requiredFiles = []string{
	"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
	"/usr/lib/ipxe/ipxe.efi", "/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/undionly.kpxe",
	"/usr/lib/ipxe/qemu/efi-e1000.rom", "/usr/lib/ipxe/qemu/efi-virtio.rom",
}

// requireLab skips t unless the machine can run the end-to-end tests: root
// and every tool and file present. The reason names what is missing.
func requireLab(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "e2e: needs root (network namespaces, taps, QEMU); run `make e2e` as root")
	}
	var missing []string
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range requiredFiles {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		needs.Skipf(t, "e2e: missing %s: install the packages of e2e-libvirt/apt-packages", strings.Join(missing, ", "))
	}
}
