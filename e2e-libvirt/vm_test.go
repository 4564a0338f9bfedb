package e2elibvirt

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Firmware kinds.
const (
	firmwareBIOS = "bios" // SeaBIOS, i440fx
	firmwareUEFI = "uefi" // OVMF, q35
)

// vmSpec describes a VM.
type vmSpec struct {
	// Name is unique within a lab.
	Name string
	// Hostname is the host name its first-boot config sets (default Name).
	Hostname string
	// Firmware is firmwareBIOS or firmwareUEFI.
	Firmware string
	// NIC is the NIC model: e1000 or virtio.
	NIC string
	// NativePXE empties the NIC's option ROM, so the firmware's own PXE
	// client boots (UEFI only: OVMF has one, SeaBIOS has not).
	NativePXE bool
	// MAC is the NIC's address.
	MAC string
	// UUID is the SMBIOS system UUID (default: derived from MAC; QEMU's
	// own default is all zeros, the same for every VM).
	UUID string
	// Tap is the tap device on the lab's bridge.
	Tap string
	// SerialLog receives the serial console (appended across power-ons).
	SerialLog string
	// VarsFile is the VM's copy of OVMF's variable store (UEFI).
	VarsFile string
	// MemoryMiB is the VM's memory (default 512).
	MemoryMiB int
	// CPUs is the number of vCPUs (default 1).
	CPUs int
	// Disks is the number of blank virtio disks of diskSizeBytes each
	// (default none). They hold nothing: the firmware cannot boot them.
	Disks int
	// DiskFiles are the disks' image files (set by the driver).
	DiskFiles []string
}

// diskSizeBytes is the size of each blank disk of a VM.
const diskSizeBytes = 1 << 30

// memory is the VM's memory in MiB.
func (s vmSpec) memory() int {
	if s.MemoryMiB > 0 {
		return s.MemoryMiB
	}
	return 512
}

// cpus is the VM's number of vCPUs.
func (s vmSpec) cpus() int {
	if s.CPUs > 0 {
		return s.CPUs
	}
	return 1
}

// diskSerial is the serial number of the VM's disk i (virtio-blk keeps 20
// characters).
func (s vmSpec) diskSerial(i int) string {
	serial := fmt.Sprintf("e2e%s%d", strings.ReplaceAll(s.MAC[len(s.MAC)-5:], ":", ""), i)
	if len(serial) > 20 {
		serial = serial[:20]
	}
	return serial
}

// machine is a VM as its BMC sees it: power and boot device.
type machine interface {
	// Spec is the VM's description.
	Spec() vmSpec
	// PowerOn starts the VM; a running VM is left alone.
	PowerOn(ctx context.Context) error
	// PowerOff stops the VM at once (pulls the plug).
	PowerOff(ctx context.Context) error
	// PoweredOn reports whether the VM runs.
	PoweredOn(ctx context.Context) (bool, error)
	// SetBootDevice sets the next boot device: pxe or disk (the VMs have
	// no disk; it is recorded and reported).
	SetBootDevice(dev string)
	// BootDevice is the boot device last set.
	BootDevice() string
	// WaitOff waits until the VM has powered off.
	WaitOff(ctx context.Context) error
}

// driver defines VMs.
type driver interface {
	// Name is qemu or libvirt.
	Name() string
	// Define creates (but does not start) a VM; it is destroyed when the
	// test ends.
	Define(t testing.TB, spec vmSpec) machine
}

// driverFlag is `go test ./e2e-libvirt -args -driver qemu`, the same as
// E2E_DRIVER (the flag wins).
var driverFlag = flag.String("driver", "", "VM driver: libvirt or qemu (default: E2E_DRIVER, else libvirt when libvirtd starts, else qemu)")

// newDriver picks the lab's driver: -driver, else E2E_DRIVER, else libvirt
// when libvirtd starts, else qemu.
func newDriver(t testing.TB, l *lab) driver {
	t.Helper()
	want := *driverFlag
	if want == "" {
		want = os.Getenv("E2E_DRIVER")
	}
	switch want {
	case "qemu":
		t.Log("VM driver: qemu (chosen by -driver or E2E_DRIVER)")
		return &qemuDriver{lab: l}
	case "libvirt":
		d, err := startLibvirt(t, l)
		if err != nil {
			t.Fatalf("VM driver libvirt (chosen by -driver or E2E_DRIVER): %v", err)
		}
		t.Log("VM driver: libvirt (chosen by -driver or E2E_DRIVER)")
		return d
	case "":
		d, err := startLibvirt(t, l)
		if err != nil {
			t.Logf("VM driver: qemu (libvirt unavailable: %v)", err)
			return &qemuDriver{lab: l}
		}
		t.Log("VM driver: libvirt (default; E2E_DRIVER=qemu for plain QEMU)")
		return d
	default:
		t.Fatalf("VM driver %q (-driver or E2E_DRIVER): want libvirt or qemu", want)
		return nil
	}
}

// bootFailures are serial-console lines that end a network boot: iPXE got
// no boot file or script, or the firmware found nothing to boot.
var bootFailures = []string{"Nothing to boot", "No bootable device"}

// waitSerial waits until the serial log holds marker (after offset bytes)
// and returns when it was first seen. It fails early when the VM powers off
// without printing it (off reports that).
func waitSerial(ctx context.Context, path, marker string, offset int64, off func() bool) (time.Time, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastChance := false
	for {
		b, _ := os.ReadFile(path)
		if int64(len(b)) > offset {
			text := strings.ReplaceAll(string(b[offset:]), "\r", "")
			if strings.Contains(text, marker) {
				return time.Now(), nil
			}
			for _, f := range bootFailures {
				if strings.Contains(text, f) {
					return time.Time{}, fmt.Errorf("network boot failed (%q in %s) before %q", f, path, marker)
				}
			}
		}
		if lastChance {
			return time.Time{}, fmt.Errorf("VM powered off without printing %q to %s", marker, path)
		}
		if off != nil && off() {
			// Read once more: the last lines may have landed
			// just before the VM stopped.
			lastChance = true
			continue
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%q not in %s: %w", marker, path, ctx.Err())
		case <-tick.C:
		}
	}
}

// fileSize is the size of path, 0 when it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// uuidFor derives a VM's SMBIOS UUID from its MAC.
func uuidFor(mac string) string {
	return "e2e00000-0000-4000-8000-" + strings.ReplaceAll(mac, ":", "")
}
