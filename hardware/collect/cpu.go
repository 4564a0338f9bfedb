package collect

import (
	"bufio"
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"

	"matchbox/hardware"
)

// cpuinfoProc is one processor block of /proc/cpuinfo.
type cpuinfoProc map[string]string

// parseCPUInfo splits /proc/cpuinfo into processor blocks, each starting at
// a "processor" line; the first value of a repeated key in a block wins.
func parseCPUInfo(b []byte) []cpuinfoProc {
	var procs []cpuinfoProc
	cur := cpuinfoProc{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if k == "processor" {
			if _, seen := cur["processor"]; seen {
				procs = append(procs, cur)
				cur = cpuinfoProc{}
			}
		}
		if _, dup := cur[k]; !dup {
			cur[k] = v
		}
	}
	if len(cur) > 0 {
		procs = append(procs, cur)
	}
	return procs
}

func (r reader) cpu() hardware.CPU {
	var c hardware.CPU
	raw, _ := os.ReadFile(r.path("proc/cpuinfo"))
	procs := parseCPUInfo(raw)
	var first cpuinfoProc
	for _, p := range procs {
		if _, ok := p["processor"]; ok {
			first = p
			break
		}
	}
	if first == nil && len(procs) > 0 {
		first = procs[0]
	}
	if first != nil {
		c.Model = first["model name"]
		c.Vendor = first["vendor_id"]
		flags := first["flags"]
		if _, isARM := first["CPU implementer"]; isARM {
			c.Vendor = armImplementer(first["CPU implementer"])
			c.Model = armPart(first["CPU implementer"], first["CPU part"])
			flags = first["Features"]
		}
		if c.Model == "" {
			c.Model = first["cpu model"] // mips, some others
		}
		c.Flags = sortedFields(flags)
	}
	c.Arch = r.arch(first)
	c.Sockets, c.Cores, c.Threads = r.topology(procs)
	return c
}

// arch returns the uname -m architecture: the kernel's own answer when it
// has /proc/sys/kernel/arch, otherwise an inference from cpuinfo, otherwise
// the agent binary's architecture (the agent is built for the machine).
func (r reader) arch(first cpuinfoProc) string {
	if a := r.str("proc/sys/kernel/arch"); a != "" {
		return a
	}
	if first != nil {
		if _, ok := first["CPU implementer"]; ok {
			if first["CPU architecture"] == "8" {
				return "aarch64"
			}
			return "armv7l"
		}
		if _, ok := first["vendor_id"]; ok {
			for _, f := range strings.Fields(first["flags"]) {
				if f == "lm" {
					return "x86_64"
				}
			}
			return "i686"
		}
	}
	return hostArch()
}

// topology counts sockets, cores and threads from sysfs, falling back to
// cpuinfo's "physical id"/"core id" and finally to one socket with one
// core per processor.
func (r reader) topology(procs []cpuinfoProc) (sockets, cores, threads int) {
	type core struct{ pkg, id int64 }
	pkgs := map[int64]bool{}
	coreSet := map[core]bool{}
	for _, name := range r.dirNames("sys/devices/system/cpu") {
		if !isCPUDir(name) {
			continue
		}
		base := "sys/devices/system/cpu/" + name + "/topology/"
		pkg, okP := r.int(base + "physical_package_id")
		id, okC := r.int(base + "core_id")
		if !okP || !okC {
			continue // offline processors have no topology
		}
		threads++
		pkgs[pkg] = true
		coreSet[core{pkg, id}] = true
	}
	if threads > 0 {
		return len(pkgs), len(coreSet), threads
	}
	for _, p := range procs {
		if _, ok := p["processor"]; !ok {
			continue
		}
		threads++
		pkg, errP := strconv.ParseInt(p["physical id"], 10, 64)
		id, errC := strconv.ParseInt(p["core id"], 10, 64)
		if errP != nil || errC != nil {
			continue
		}
		pkgs[pkg] = true
		coreSet[core{pkg, id}] = true
	}
	if len(coreSet) > 0 {
		return len(pkgs), len(coreSet), threads
	}
	if threads > 0 {
		return 1, threads, threads
	}
	return 0, 0, 0
}

// isCPUDir reports whether name is "cpu" followed by digits.
func isCPUDir(name string) bool {
	rest, ok := strings.CutPrefix(name, "cpu")
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

func sortedFields(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	sort.Strings(f)
	return f
}

// armImplementer names an arm64 "CPU implementer" code.
func armImplementer(code string) string {
	switch strings.ToLower(code) {
	case "0x41":
		return "ARM"
	case "0x42":
		return "Broadcom"
	case "0x43":
		return "Cavium"
	case "0x46":
		return "Fujitsu"
	case "0x48":
		return "HiSilicon"
	case "0x4e":
		return "NVIDIA"
	case "0x50":
		return "APM"
	case "0x51":
		return "Qualcomm"
	case "0x61":
		return "Apple"
	case "0x6d":
		return "Microsoft"
	case "0xc0":
		return "Ampere"
	default:
		return code
	}
}

// armPart names an arm64 core from its implementer and "CPU part" codes,
// as lscpu does; an unknown part is "implementer part" in hex.
func armPart(impl, part string) string {
	impl, part = strings.ToLower(impl), strings.ToLower(part)
	switch impl + "/" + part {
	case "0x41/0xd03":
		return "Cortex-A53"
	case "0x41/0xd07":
		return "Cortex-A57"
	case "0x41/0xd08":
		return "Cortex-A72"
	case "0x41/0xd0b":
		return "Cortex-A76"
	case "0x41/0xd0c":
		return "Neoverse-N1"
	case "0x41/0xd40":
		return "Neoverse-V1"
	case "0x41/0xd49":
		return "Neoverse-N2"
	case "0x41/0xd4f":
		return "Neoverse-V2"
	case "0x43/0x0af":
		return "ThunderX2 99xx"
	case "0x46/0x001":
		return "A64FX"
	case "0x48/0xd01":
		return "Kunpeng-920"
	case "0xc0/0xac3":
		return "Ampere-1"
	case "0xc0/0xac4":
		return "Ampere-1a"
	}
	if impl == "" && part == "" {
		return ""
	}
	return strings.TrimSpace(impl + " " + part)
}
