// Package facts defines hardware-fact selector terms: small expressions
// such as `memory.bytes >= 64GiB` or `system.product in ("R640", "R650")`
// that a group uses to select machines by their hardware inventory.
//
// A term is `FACT OP VALUE` or `FACT in (VALUE, VALUE, ...)`. The operators
// are =, !=, <, <=, >, >= and in. Values are numbers (with a unit where the
// fact has one), booleans (true, false) or strings, quoted Go-style
// ("Dell Inc.") or bare (Dell Inc.: a bare value runs to the end of the term,
// or to the next comma or parenthesis inside an in list, spaces around it
// trimmed). Strings compare exactly, case included.
//
// The fact namespace (see Facts for the same table in code):
//
//	fact               type     computed from the Inventory
//	system.vendor      string   System.Vendor
//	system.product     string   System.Product
//	system.serial      string   System.Serial
//	system.uuid        string   System.UUID
//	system.boot_mode   string   System.BootMode ("bios" or "uefi")
//	cpu.arch           string   CPU.Arch (uname -m: x86_64, aarch64)
//	cpu.vendor         string   CPU.Vendor (GenuineIntel, AuthenticAMD, ARM, Ampere)
//	cpu.model          string   CPU.Model
//	cpu.flags          set      CPU.Flags; = holds when the flag is present,
//	                            != when it is absent, in when any listed flag is present
//	cpu.sockets        count    CPU.Sockets
//	cpu.cores          count    CPU.Cores (physical cores over all sockets)
//	cpu.threads        count    CPU.Threads (logical processors)
//	memory.bytes       bytes    Memory.Bytes
//	disk.count         count    number of Disks
//	disk.ssd.count     count    Disks that are not rotational (SSD and NVMe)
//	disk.hdd.count     count    Disks that are rotational
//	disk.nvme.count    count    Disks whose name starts with "nvme"
//	disk.total_bytes   bytes    sum of Disks' SizeBytes
//	disk.max_bytes     bytes    the largest disk's SizeBytes
//	disk.rotational    boolean  true when any disk is rotational, so
//	                            `disk.rotational = false` means "no spinning disk"
//	nic.count          count    number of NICs
//	nic.up.count       count    NICs with link
//	nic.speed_mbps     speed    the highest SpeedMbps of any NIC
//	nic.driver         set      the NICs' drivers (like cpu.flags)
//
// Units: bytes take B, KB, MB, GB, TB, PB (powers of 1000) and KiB, MiB,
// GiB, TiB, PiB (powers of 1024), case-insensitive, with an optional space
// and decimals that give a whole number of bytes (1.5TiB); no unit means
// bytes. Speeds take Mbps (the default), Gbps and Tbps. Counts take no unit.
//
// A fact the inventory does not know (an empty string, zero memory, zero
// cores, no NIC speed) satisfies no operator, != included, and a machine
// with no inventory at all matches no term. Counts and disk.rotational are
// always known once there is an inventory (a machine may have no disk).
package facts

import (
	"slices"
	"strings"

	"matchbox/hardware"
)

// Type is the type of a fact's values.
type Type int

// Fact types.
const (
	// TypeString facts compare strings exactly with =, != and in.
	TypeString Type = iota + 1
	// TypeSet facts hold several strings; = tests membership.
	TypeSet
	// TypeBool facts are true or false; only = and != apply.
	TypeBool
	// TypeCount facts are whole numbers without a unit.
	TypeCount
	// TypeBytes facts are sizes in bytes and accept size units.
	TypeBytes
	// TypeSpeed facts are speeds in Mbit/s and accept Mbps, Gbps, Tbps.
	TypeSpeed
)

// String names the type as the fact table does.
func (t Type) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeSet:
		return "set"
	case TypeBool:
		return "boolean"
	case TypeCount:
		return "count"
	case TypeBytes:
		return "bytes"
	case TypeSpeed:
		return "speed"
	default:
		return "unknown"
	}
}

func (t Type) numeric() bool { return t == TypeCount || t == TypeBytes || t == TypeSpeed }

// Fact describes one fact name of the namespace.
type Fact struct {
	// Name is the fact's name in expressions, e.g. "memory.bytes".
	Name string
	// Type is the type of its values.
	Type Type
	// Doc says how the fact is computed from the inventory.
	Doc string

	num  func(*hardware.Inventory) (uint64, bool)
	str  func(*hardware.Inventory) (string, bool)
	set  func(*hardware.Inventory) []string
	flag func(*hardware.Inventory) bool
}

func strFact(name, doc string, f func(*hardware.Inventory) string) Fact {
	return Fact{Name: name, Type: TypeString, Doc: doc, str: func(inv *hardware.Inventory) (string, bool) {
		s := f(inv)
		return s, s != ""
	}}
}

// numFact is a number fact unknown when zero.
func numFact(name string, t Type, doc string, f func(*hardware.Inventory) uint64) Fact {
	return Fact{Name: name, Type: t, Doc: doc, num: func(inv *hardware.Inventory) (uint64, bool) {
		n := f(inv)
		return n, n != 0
	}}
}

// countFact is a number fact that is always known.
func countFact(name string, t Type, doc string, f func(*hardware.Inventory) uint64) Fact {
	return Fact{Name: name, Type: t, Doc: doc, num: func(inv *hardware.Inventory) (uint64, bool) {
		return f(inv), true
	}}
}

func countDisks(inv *hardware.Inventory, keep func(hardware.Disk) bool) uint64 {
	var n uint64
	for _, d := range inv.Disks {
		if keep(d) {
			n++
		}
	}
	return n
}

// Facts returns the fact namespace, sorted by name.
func Facts() []Fact {
	facts := []Fact{
		strFact("system.vendor", "System.Vendor", func(i *hardware.Inventory) string { return i.System.Vendor }),
		strFact("system.product", "System.Product", func(i *hardware.Inventory) string { return i.System.Product }),
		strFact("system.serial", "System.Serial", func(i *hardware.Inventory) string { return i.System.Serial }),
		strFact("system.uuid", "System.UUID", func(i *hardware.Inventory) string { return i.System.UUID }),
		strFact("system.boot_mode", "System.BootMode: bios or uefi", func(i *hardware.Inventory) string { return i.System.BootMode }),
		strFact("cpu.arch", "CPU.Arch as uname -m names it: x86_64, aarch64", func(i *hardware.Inventory) string { return i.CPU.Arch }),
		strFact("cpu.vendor", "CPU.Vendor: GenuineIntel, AuthenticAMD, ARM, Ampere, ...", func(i *hardware.Inventory) string { return i.CPU.Vendor }),
		strFact("cpu.model", "CPU.Model", func(i *hardware.Inventory) string { return i.CPU.Model }),
		{Name: "cpu.flags", Type: TypeSet, Doc: "CPU.Flags; = holds when the flag is present",
			set: func(i *hardware.Inventory) []string { return i.CPU.Flags }},
		numFact("cpu.sockets", TypeCount, "CPU.Sockets", func(i *hardware.Inventory) uint64 { return uint64(max(i.CPU.Sockets, 0)) }),
		numFact("cpu.cores", TypeCount, "CPU.Cores: physical cores over all sockets", func(i *hardware.Inventory) uint64 { return uint64(max(i.CPU.Cores, 0)) }),
		numFact("cpu.threads", TypeCount, "CPU.Threads: logical processors", func(i *hardware.Inventory) uint64 { return uint64(max(i.CPU.Threads, 0)) }),
		numFact("memory.bytes", TypeBytes, "Memory.Bytes", func(i *hardware.Inventory) uint64 { return i.Memory.Bytes }),
		countFact("disk.count", TypeCount, "number of disks", func(i *hardware.Inventory) uint64 { return uint64(len(i.Disks)) }),
		countFact("disk.ssd.count", TypeCount, "disks that are not rotational (SSD, NVMe)", func(i *hardware.Inventory) uint64 {
			return countDisks(i, func(d hardware.Disk) bool { return !d.Rotational })
		}),
		countFact("disk.hdd.count", TypeCount, "rotational disks", func(i *hardware.Inventory) uint64 {
			return countDisks(i, func(d hardware.Disk) bool { return d.Rotational })
		}),
		countFact("disk.nvme.count", TypeCount, "disks named nvme*", func(i *hardware.Inventory) uint64 {
			return countDisks(i, func(d hardware.Disk) bool { return strings.HasPrefix(d.Name, "nvme") })
		}),
		countFact("disk.total_bytes", TypeBytes, "sum of the disks' sizes", func(i *hardware.Inventory) uint64 {
			var n uint64
			for _, d := range i.Disks {
				n += d.SizeBytes
			}
			return n
		}),
		countFact("disk.max_bytes", TypeBytes, "the largest disk's size", func(i *hardware.Inventory) uint64 {
			var n uint64
			for _, d := range i.Disks {
				n = max(n, d.SizeBytes)
			}
			return n
		}),
		{Name: "disk.rotational", Type: TypeBool, Doc: "true when any disk is rotational",
			flag: func(i *hardware.Inventory) bool {
				return countDisks(i, func(d hardware.Disk) bool { return d.Rotational }) > 0
			}},
		countFact("nic.count", TypeCount, "number of NICs", func(i *hardware.Inventory) uint64 { return uint64(len(i.NICs)) }),
		countFact("nic.up.count", TypeCount, "NICs with link", func(i *hardware.Inventory) uint64 {
			var n uint64
			for _, c := range i.NICs {
				if c.Link {
					n++
				}
			}
			return n
		}),
		numFact("nic.speed_mbps", TypeSpeed, "the highest NIC speed in Mbit/s", func(i *hardware.Inventory) uint64 {
			var n int
			for _, c := range i.NICs {
				n = max(n, c.SpeedMbps)
			}
			return uint64(n)
		}),
		{Name: "nic.driver", Type: TypeSet, Doc: "the NICs' drivers; = holds when any NIC uses the driver",
			set: func(i *hardware.Inventory) []string {
				var s []string
				for _, c := range i.NICs {
					s = append(s, c.Driver)
				}
				return s
			}},
	}
	slices.SortFunc(facts, func(a, b Fact) int { return strings.Compare(a.Name, b.Name) })
	return facts
}

// Lookup returns the fact with the given name.
func Lookup(name string) (Fact, bool) {
	for _, f := range Facts() {
		if f.Name == name {
			return f, true
		}
	}
	return Fact{}, false
}

// Names returns the fact names, sorted.
func Names() []string {
	fs := Facts()
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return names
}

// closeNames returns up to three fact names near name, nearest first.
func closeNames(name string) []string {
	type cand struct {
		name string
		dist int
	}
	low := strings.ToLower(name)
	var cands []cand
	for _, n := range Names() {
		d := levenshtein(low, n)
		limit := max(1, len(n)/4)
		if d <= limit || (len(low) >= 3 && strings.HasPrefix(n, low)) {
			cands = append(cands, cand{n, d})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.dist - b.dist })
	var out []string
	for i := 0; i < len(cands) && i < 3; i++ {
		out = append(out, cands[i].name)
	}
	return out
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
