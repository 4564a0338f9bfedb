package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"matchbox/hardware"

	"matchbox/internal/needs"
)

// TestDiscoveryImageInQEMU builds the discovery image with
// os-assets/build-discovery, boots it in QEMU (TCG) with the agent in print
// mode and checks the printed inventory against the virtual machine's
// configuration. Set MATCHBOX_DISCOVERY_CACHE to keep the downloaded Debian
// packages between runs.
func TestDiscoveryImageInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU for about 15 s per machine; skipped with -short")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root: builds the image from Debian packages with apt-get download")
	}
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "cpio", "gzip", "tar", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skipf(t, "%s not installed (Debian packages qemu-system-x86, apt, dpkg, cpio, gzip, coreutils)", tool)
		}
	}
	if out, err := exec.Command("apt-cache", "show", "--no-all-versions", "busybox-static").CombinedOutput(); err != nil || len(out) == 0 {
		needs.Skip(t, "apt does not know busybox-static: run apt-get update")
	}

	cache := os.Getenv("MATCHBOX_DISCOVERY_CACHE")
	if cache == "" {
		cache = t.TempDir()
	}
	dest := build(t, cache, t.TempDir())

	// The same inputs build the same bytes.
	again := build(t, cache, t.TempDir())
	for _, name := range []string{"vmlinuz", "initramfs.cpio.gz"} {
		a, errA := os.ReadFile(filepath.Join(dest, "discovery", name))
		b, errB := os.ReadFile(filepath.Join(again, "discovery", name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%v, %v)", name, errA, errB)
		}
	}

	ovmfCode := "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars := "/usr/share/OVMF/OVMF_VARS_4M.fd"
	machines := []struct {
		name     string
		bootMode string
		nic      string
		args     func(dir string) []string
		skip     string
	}{
		{name: "bios", bootMode: hardware.BootModeBIOS, nic: "e1000",
			args: func(string) []string { return []string{"-machine", "pc"} }},
		{name: "uefi", bootMode: hardware.BootModeUEFI, nic: "e1000e",
			args: func(dir string) []string {
				vars := filepath.Join(dir, "vars.fd")
				copyFile(t, ovmfVars, vars)
				return []string{"-machine", "q35", "-global", "driver=cfi.pflash01,property=secure,value=off",
					"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
					"-drive", "if=pflash,format=raw,unit=1,file=" + vars}
			},
			skip: ifMissing(ovmfCode, ovmfVars)},
	}
	for _, m := range machines {
		t.Run(m.name, func(t *testing.T) {
			if m.skip != "" {
				needs.Skip(t, m.skip)
			}
			dir := t.TempDir()
			const (
				diskSize   = 3<<30 + 512<<20
				diskSerial = "MBXDISK01"
				mac        = "52:54:00:4d:42:58"
				uuid       = "5f6a2b1c-9d8e-4f70-a1b2-c3d4e5f60718"
			)
			disk := filepath.Join(dir, "disk.img")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(disk, diskSize); err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(dir, "serial.log")
			args := append(m.args(dir),
				"-accel", "tcg", "-m", "1024", "-smp", "2", "-nodefaults", "-nographic", "-monitor", "none",
				"-serial", "file:"+logPath, "-no-reboot",
				"-kernel", filepath.Join(dest, "discovery", "vmlinuz"),
				"-initrd", filepath.Join(dest, "discovery", "initramfs.cpio.gz"),
				"-append", "console=ttyS0 panic=-1 loglevel=1 matchbox.print=1 matchbox.after=poweroff",
				"-smbios", "type=1,manufacturer=Matchbox Labs,product=Discovery Test,serial=MBX-0001",
				"-uuid", uuid,
				"-drive", "file="+disk+",if=none,id=d0,format=raw",
				"-device", "virtio-blk-pci,drive=d0,serial="+diskSerial,
				"-device", m.nic+",mac="+mac)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			start := time.Now()
			out, err := exec.CommandContext(ctx, "qemu-system-x86_64", args...).CombinedOutput()
			serial, _ := os.ReadFile(logPath)
			if err != nil {
				t.Fatalf("qemu: %v\n%s\nserial log:\n%s", err, out, serial)
			}
			t.Logf("%s: power-on to power-off %.1f s", m.name, time.Since(start).Seconds())

			inv, ok := printedInventory(serial)
			if !ok {
				t.Fatalf("no inventory in the serial log:\n%s", serial)
			}
			want := hardware.System{Vendor: "Matchbox Labs", Product: "Discovery Test", Serial: "MBX-0001",
				UUID: uuid, BootMode: m.bootMode}
			if inv.System != want {
				t.Errorf("system = %+v, want %+v", inv.System, want)
			}
			if inv.Memory.Bytes < 900<<20 || inv.Memory.Bytes > 1<<30 {
				t.Errorf("memory = %d bytes, want about 1 GiB (-m 1024)", inv.Memory.Bytes)
			}
			if inv.CPU.Threads != 2 || inv.CPU.Arch != "x86_64" || inv.CPU.Sockets < 1 {
				t.Errorf("cpu = %+v, want 2 threads of x86_64 (-smp 2)", inv.CPU)
			}
			if len(inv.Disks) != 1 || inv.Disks[0].SizeBytes != diskSize || inv.Disks[0].Serial != diskSerial {
				t.Errorf("disks = %+v, want one of %d bytes with serial %s", inv.Disks, diskSize, diskSerial)
			}
			if len(inv.NICs) != 1 || inv.NICs[0].MAC != mac || inv.NICs[0].Driver != m.nic {
				t.Errorf("nics = %+v, want one %s with MAC %s", inv.NICs, m.nic, mac)
			}
			// The agent itself powered the machine off (matchbox.after):
			// /init never got control back.
			if bytes.Contains(serial, []byte("matchbox-agent exited")) {
				t.Errorf("the agent returned to /init instead of powering off:\n%s", serial)
			}
		})
	}
}

// build runs os-assets/build-discovery into dest and returns dest.
func build(t *testing.T, cache, dest string) string {
	t.Helper()
	cmd := exec.Command("bash", "../../os-assets/build-discovery", dest)
	cmd.Env = append(os.Environ(), "CACHE_DIR="+cache,
		"PATH="+filepath.Join(runtime.GOROOT(), "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-discovery: %v\n%s", err, out)
	}
	t.Logf("build-discovery took %.1f s:\n%s", time.Since(start).Seconds(), out)
	return dest
}

// printedInventory finds the agent's JSON line in a serial log.
func printedInventory(log []byte) (hardware.Inventory, bool) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, `{"system"`) {
			continue
		}
		var inv hardware.Inventory
		if err := json.Unmarshal([]byte(line), &inv); err == nil {
			return inv, true
		}
	}
	return hardware.Inventory{}, false
}

func ifMissing(paths ...string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return p + " missing (Debian package ovmf)"
		}
	}
	return ""
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
