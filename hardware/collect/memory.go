package collect

import (
	"strconv"
	"strings"

	"matchbox/hardware"
)

// memory returns the installed memory.
//
// It prefers the memory blocks of /sys/devices/system/memory (the number of
// memoryN blocks times block_size_bytes): that is the physical memory the
// kernel manages, a whole number of blocks, so a 64 GiB server reports
// 64 GiB and matches "memory.bytes >= 64GiB". /proc/meminfo MemTotal is
// smaller than the installed memory by what the firmware and the kernel
// reserve (typically 1–3 %), which would make such selectors miss; it is
// used only when the kernel has no memory block devices
// (CONFIG_MEMORY_HOTPLUG unset).
func (r reader) memory() hardware.Memory {
	if b := r.memoryBlocks(); b > 0 {
		return hardware.Memory{Bytes: b}
	}
	return hardware.Memory{Bytes: r.memTotal()}
}

func (r reader) memoryBlocks() uint64 {
	const dir = "sys/devices/system/memory/"
	size, err := strconv.ParseUint(strings.TrimPrefix(r.str(dir+"block_size_bytes"), "0x"), 16, 64)
	if err != nil || size == 0 {
		return 0
	}
	var n uint64
	for _, name := range r.dirNames(dir) {
		rest, ok := strings.CutPrefix(name, "memory")
		if !ok {
			continue
		}
		if _, err := strconv.ParseUint(rest, 10, 64); err != nil {
			continue
		}
		n++
	}
	return n * size
}

func (r reader) memTotal() uint64 {
	for _, line := range strings.Split(r.str("proc/meminfo"), "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}
