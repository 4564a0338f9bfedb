// Package collect reads a machine's hardware inventory from the Linux
// /proc and /sys file systems.
//
// Every path is read under a root directory, so tests point Collect at a
// fixture tree and the agent points it at "/". A fact whose file is missing
// or unreadable is left empty; only a root that cannot be read at all is an
// error.
//
// Sources, by fact:
//
//	system      /sys/class/dmi/id/{sys_vendor,product_name,product_serial,product_uuid}
//	boot mode   /sys/firmware/efi exists → "uefi", else "bios"
//	cpu         /proc/cpuinfo (x86 "model name"/"vendor_id"/"flags";
//	            arm64 "CPU implementer"/"CPU part"/"Features")
//	cpu.arch    /proc/sys/kernel/arch, else inferred from /proc/cpuinfo,
//	            else the agent's own GOARCH in uname -m spelling
//	topology    /sys/devices/system/cpu/cpu*/topology/{physical_package_id,core_id},
//	            else /proc/cpuinfo "physical id"/"core id"
//	memory      /sys/devices/system/memory/memory*/ × block_size_bytes, else
//	            /proc/meminfo MemTotal (see collectMemory)
//	disks       /sys/block/* except loop, ram, zram, dm-, sr, md, nbd
//	nics        /sys/class/net/* that have a device link, except lo
package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"matchbox/hardware"
)

// Collect reads the inventory of the machine whose /proc and /sys are
// mounted under root ("/" for the running machine). It fails only when
// root cannot be read or holds neither proc nor sys; missing facts are
// left empty. CollectedAt is set to the current time.
func Collect(ctx context.Context, root string) (hardware.Inventory, error) {
	if err := checkRoot(root); err != nil {
		return hardware.Inventory{}, err
	}
	r := reader{root: root}
	var inv hardware.Inventory
	inv.System = r.system()
	if err := ctx.Err(); err != nil {
		return hardware.Inventory{}, fmt.Errorf("collect: %w", err)
	}
	inv.CPU = r.cpu()
	inv.Memory = r.memory()
	if err := ctx.Err(); err != nil {
		return hardware.Inventory{}, fmt.Errorf("collect: %w", err)
	}
	inv.Disks = r.disks()
	inv.NICs = r.nics()
	inv.CollectedAt = time.Now().UTC()
	return inv, ctx.Err()
}

func checkRoot(root string) error {
	if root == "" {
		return errors.New("collect: empty root directory")
	}
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("collect: root %q: %w", root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("collect: root %q is not a directory", root)
	}
	if _, err := os.ReadDir(root); err != nil {
		return fmt.Errorf("collect: root %q: %w", root, err)
	}
	_, errProc := os.Stat(filepath.Join(root, "proc"))
	_, errSys := os.Stat(filepath.Join(root, "sys"))
	if errProc != nil && errSys != nil {
		return fmt.Errorf("collect: root %q has neither proc nor sys", root)
	}
	return nil
}

// reader reads files relative to a root directory.
type reader struct {
	root string
}

func (r reader) path(rel string) string { return filepath.Join(r.root, rel) }

// str returns the trimmed content of a file, or "" when it cannot be read.
func (r reader) str(rel string) string {
	b, err := os.ReadFile(r.path(rel))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// exists reports whether rel exists (a dangling symlink counts).
func (r reader) exists(rel string) bool {
	_, err := os.Lstat(r.path(rel))
	return err == nil
}

// int returns the integer content of a file and whether it was readable.
func (r reader) int(rel string) (int64, bool) {
	s := r.str(rel)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// dirNames lists the entry names of a directory, sorted; nil when it
// cannot be read.
func (r reader) dirNames(rel string) []string {
	ents, err := os.ReadDir(r.path(rel))
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// linkBase returns the last element of a symlink's target, or "".
func (r reader) linkBase(rel string) string {
	t, err := os.Readlink(r.path(rel))
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

func (r reader) system() hardware.System {
	const dmi = "sys/class/dmi/id/"
	s := hardware.System{
		Vendor:   clean(r.str(dmi + "sys_vendor")),
		Product:  clean(r.str(dmi + "product_name")),
		Serial:   clean(r.str(dmi + "product_serial")),
		UUID:     strings.ToLower(clean(r.str(dmi + "product_uuid"))),
		BootMode: hardware.BootModeBIOS,
	}
	if r.exists("sys/firmware/efi") {
		s.BootMode = hardware.BootModeUEFI
	}
	return s
}

// clean drops the placeholder values firmware vendors put in DMI strings
// for "no value".
func clean(s string) string {
	switch strings.ToLower(s) {
	case "to be filled by o.e.m.", "default string", "not specified", "none",
		"system serial number", "system product name", "system manufacturer",
		"0123456789":
		return ""
	}
	return s
}

// trimNUL trims NUL bytes and spaces from binary sysfs content.
func trimNUL(b []byte) string {
	return strings.TrimSpace(string(bytes.Trim(b, "\x00")))
}

// goarchToUname maps runtime.GOARCH values to uname -m spellings.
func goarchToUname(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "386":
		return "i686"
	case "arm64":
		return "aarch64"
	case "arm":
		return "armv7l"
	case "ppc64le":
		return "ppc64le"
	case "ppc64":
		return "ppc64"
	case "s390x":
		return "s390x"
	case "riscv64":
		return "riscv64"
	case "loong64":
		return "loongarch64"
	default:
		return goarch
	}
}

// hostArch is the agent's own architecture in uname -m spelling.
func hostArch() string { return goarchToUname(runtime.GOARCH) }
