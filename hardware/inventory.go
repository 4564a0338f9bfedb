// Package hardware defines the hardware inventory that the discovery agent
// reports for a machine and that hardware-fact selectors are evaluated on.
//
// The JSON form uses stable lower_snake field names; it is the body of
// POST /api/v1/machines/{id}/inventory and the machine's stored facts.
// A fact the agent could not read is left at its zero value (empty string,
// zero number, false), never reported as an error.
package hardware

import "time"

// Boot modes reported in System.BootMode.
const (
	// BootModeBIOS means the kernel was started by legacy BIOS firmware.
	BootModeBIOS = "bios"
	// BootModeUEFI means the kernel was started by UEFI firmware
	// (/sys/firmware/efi exists).
	BootModeUEFI = "uefi"
)

// Inventory is what one machine is made of, as collected by the agent.
type Inventory struct {
	// System identifies the machine from its DMI (SMBIOS) data.
	System System `json:"system"`
	// CPU describes the processors.
	CPU CPU `json:"cpu"`
	// Memory describes the installed memory.
	Memory Memory `json:"memory"`
	// Disks lists the physical block devices, sorted by name.
	Disks []Disk `json:"disks"`
	// NICs lists the physical network interfaces, sorted by name.
	NICs []NIC `json:"nics"`
	// CollectedAt is when the agent collected the facts (UTC).
	CollectedAt time.Time `json:"collected_at"`
}

// System is the machine's identity from /sys/class/dmi/id.
type System struct {
	// Vendor is the system manufacturer (sys_vendor), e.g. "Dell Inc.".
	Vendor string `json:"vendor"`
	// Product is the product name (product_name), e.g. "PowerEdge R640".
	Product string `json:"product"`
	// Serial is the system serial number or service tag (product_serial).
	Serial string `json:"serial"`
	// UUID is the SMBIOS system UUID (product_uuid), lower case.
	UUID string `json:"uuid"`
	// BootMode is BootModeBIOS or BootModeUEFI.
	BootMode string `json:"boot_mode"`
}

// CPU describes the processors of a machine.
type CPU struct {
	// Model is the processor model name, e.g. "Intel(R) Xeon(R) Gold 6230
	// CPU @ 2.10GHz"; on arm64 it is derived from the implementer and part
	// numbers (e.g. "Neoverse-N1") when the part is known.
	Model string `json:"model"`
	// Vendor is the processor vendor: "GenuineIntel", "AuthenticAMD" on
	// x86; the implementer's name ("ARM", "Ampere", ...) on arm64.
	Vendor string `json:"vendor"`
	// Arch is the machine architecture as uname -m names it: "x86_64",
	// "aarch64", ...
	Arch string `json:"arch"`
	// Sockets is the number of physical processor packages.
	Sockets int `json:"sockets"`
	// Cores is the number of physical cores over all sockets.
	Cores int `json:"cores"`
	// Threads is the number of online logical processors.
	Threads int `json:"threads"`
	// Flags are the feature flags of the first processor (x86 "flags",
	// arm64 "Features"), sorted.
	Flags []string `json:"flags"`
}

// Memory describes the installed memory.
type Memory struct {
	// Bytes is the installed memory in bytes.
	Bytes uint64 `json:"bytes"`
}

// Disk is one physical block device.
type Disk struct {
	// Name is the kernel name, e.g. "sda", "nvme0n1", "vda".
	Name string `json:"name"`
	// SizeBytes is the capacity in bytes.
	SizeBytes uint64 `json:"size_bytes"`
	// Rotational is true for spinning disks (queue/rotational = 1).
	Rotational bool `json:"rotational"`
	// Model is the device model string.
	Model string `json:"model"`
	// Serial is the device serial number.
	Serial string `json:"serial"`
	// WWN is the device's world wide identifier as the kernel prints it
	// (wwid), e.g. "naa.5000c500a1b2c3d4" or "eui.0025388b91b2c3d4".
	WWN string `json:"wwn"`
}

// NIC is one physical network interface.
type NIC struct {
	// Name is the kernel interface name, e.g. "eno1".
	Name string `json:"name"`
	// MAC is the hardware address, lower case, colon separated.
	MAC string `json:"mac"`
	// Driver is the kernel driver bound to the device, e.g. "mlx5_core".
	Driver string `json:"driver"`
	// SpeedMbps is the negotiated link speed in Mbit/s; 0 when unknown
	// (link down or not reported).
	SpeedMbps int `json:"speed_mbps"`
	// Link is true when the interface has carrier.
	Link bool `json:"link"`
}
