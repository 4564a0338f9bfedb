package collect

import (
	"os"
	"strings"

	"matchbox/hardware"
)

// skipDisk reports whether a /sys/block entry is a virtual or removable
// optical device rather than a disk.
func skipDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "sr", "md", "nbd", "fd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (r reader) disks() []hardware.Disk {
	disks := []hardware.Disk{}
	for _, name := range r.dirNames("sys/block") {
		if skipDisk(name) {
			continue
		}
		base := "sys/block/" + name + "/"
		d := hardware.Disk{
			Name:       name,
			Rotational: r.str(base+"queue/rotational") == "1",
			Model:      r.str(base + "device/model"),
			Serial:     r.diskSerial(base),
			WWN:        r.str(base + "wwid"),
		}
		if sectors, ok := r.int(base + "size"); ok && sectors > 0 {
			// /sys/block/*/size counts 512-byte sectors whatever the
			// device's logical block size.
			d.SizeBytes = uint64(sectors) * 512
		}
		if d.WWN == "" {
			d.WWN = r.str(base + "device/wwid")
		}
		disks = append(disks, d)
	}
	return disks
}

// diskSerial reads the serial from device/serial (NVMe, some SCSI), from
// the block device's own serial (virtio-blk), or from the SCSI unit serial
// number VPD page 0x80 (SATA/SAS behind the SCSI layer).
func (r reader) diskSerial(base string) string {
	if s := r.str(base + "device/serial"); s != "" {
		return s
	}
	if s := r.str(base + "serial"); s != "" {
		return s
	}
	b, err := os.ReadFile(r.path(base + "device/vpd_pg80"))
	if err != nil || len(b) < 4 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	b = b[4:]
	if n < len(b) {
		b = b[:n]
	}
	return trimNUL(b)
}
