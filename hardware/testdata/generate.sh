#!/usr/bin/env bash
# Writes the fixture trees used by the hardware/collect tests: the /proc and
# /sys files the collector reads, as three real machines show them.
#
#   dell-r740xd    2-socket Xeon Gold 6230 (2x20 cores, 80 threads), 384 GiB in
#                  memory blocks, 8 HDD + 2 SATA SSD + 2 NVMe, 2x 25G mlx5 + 1G
#                  tg3, UEFI, with loop/dm/sr devices and bond/bridge interfaces
#                  that must be skipped
#   supermicro-1u  1-socket Xeon E-2236 (6 cores, 12 threads) with topology only
#                  in /proc/cpuinfo, memory only in /proc/meminfo, no
#                  /proc/sys/kernel/arch, 1 SSD + 1 HDD, 2x 1G igb, BIOS boot
#   ampere-altra   arm64 Ampere Altra Q32-17 (Neoverse-N1, 32 cores), UEFI,
#                  1 NVMe, 2x 25G mlx5 (one without link)
#
# Run it from anywhere: it rewrites the trees beside itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

put() { # put FILE CONTENT: write CONTENT and a newline to FILE under $T
	mkdir -p "$(dirname "$T/$1")"
	printf '%s\n' "$2" >"$T/$1"
}
link() { # link NAME TARGET: a symlink NAME under $T pointing to TARGET
	mkdir -p "$(dirname "$T/$1")"
	ln -sfn "$2" "$T/$1"
}
vpd80() { # vpd80 FILE SERIAL: SCSI VPD page 0x80 holding SERIAL
	mkdir -p "$(dirname "$T/$1")"
	local n=${#2}
	printf "\\x00\\x80\\x00\\x$(printf %02x "$n")%s" "$2" >"$T/$1"
}
dmi() { # dmi VENDOR PRODUCT SERIAL UUID
	put sys/class/dmi/id/sys_vendor "$1"
	put sys/class/dmi/id/product_name "$2"
	put sys/class/dmi/id/product_serial "$3"
	put sys/class/dmi/id/product_uuid "$4"
	put sys/class/dmi/id/bios_vendor "$1"
}
disk() { # disk NAME SECTORS ROTATIONAL MODEL SERIAL WWID
	local b=sys/block/$1
	put "$b/size" "$2"
	put "$b/queue/rotational" "$3"
	put "$b/device/model" "$4"
	if [[ $1 == nvme* ]]; then
		put "$b/device/serial" "$5"
		put "$b/wwid" "$6"
	else
		vpd80 "$b/device/vpd_pg80" "$5"
		put "$b/device/wwid" "$6"
	fi
}
nic() { # nic NAME MAC DRIVER SPEED CARRIER OPERSTATE ("-" leaves a file out)
	local n=sys/class/net/$1
	put "$n/address" "$2"
	link "$n/device/driver" "../../../../bus/pci/drivers/$3"
	[[ $4 == - ]] || put "$n/speed" "$4"
	[[ $5 == - ]] || put "$n/carrier" "$5"
	put "$n/operstate" "$6"
}
virtual_nic() { # virtual_nic NAME MAC: an interface without a device link
	put "sys/class/net/$1/address" "$2"
	put "sys/class/net/$1/operstate" up
}
topology() { # topology CPU PACKAGE CORE
	put "sys/devices/system/cpu/cpu$1/topology/physical_package_id" "$2"
	put "sys/devices/system/cpu/cpu$1/topology/core_id" "$3"
}
memory_blocks() { # memory_blocks COUNT BLOCK_SIZE_HEX
	put sys/devices/system/memory/block_size_bytes "$2"
	put sys/devices/system/memory/auto_online_blocks online
	local i
	for ((i = 0; i < $1; i++)); do
		put "sys/devices/system/memory/memory$i/state" online
	done
}
meminfo() { # meminfo KB
	put proc/meminfo "MemTotal:       $1 kB
MemFree:        $(($1 / 2)) kB
MemAvailable:   $(($1 / 2)) kB
Buffers:           12345 kB"
}

# ---------------------------------------------------------------- dell-r740xd
T=$here/dell-r740xd
rm -rf "$T"
dmi "Dell Inc." "PowerEdge R740xd" "7XK9F53" "4c4c4544-0058-4b10-8039-b7c04f463533"
put sys/firmware/efi/fw_platform_size 64
put proc/sys/kernel/arch x86_64
put proc/cmdline "BOOT_IMAGE=/vmlinuz console=ttyS0 matchbox.url=http://10.0.0.1:8080 matchbox.id=7XK9F53"
# Intel numbers cores with gaps; threads 40-79 are the siblings of 0-39.
cores=(0 1 2 3 4 8 9 10 11 12 16 17 18 19 20 24 25 26 27 28)
flags="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cdp_l3 invpcid_single intel_ppin ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm cqm mpx rdt_a avx512f avx512dq rdseed adx smap clflushopt clwb intel_pt avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local dtherm ida arat pln pts pku ospke avx512_vnni md_clear flush_l1d arch_capabilities"
cpuinfo=""
for ((cpu = 0; cpu < 80; cpu++)); do
	pkg=$(((cpu / 20) % 2))
	core=${cores[$((cpu % 20))]}
	topology "$cpu" "$pkg" "$core"
	cpuinfo+="processor	: $cpu
vendor_id	: GenuineIntel
cpu family	: 6
model		: 85
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
stepping	: 7
microcode	: 0x5003604
cpu MHz		: 2100.000
cache size	: 28160 KB
physical id	: $pkg
siblings	: 40
core id		: $core
cpu cores	: 20
apicid		: $((pkg * 64 + core * 2 + cpu / 40))
fpu		: yes
fpu_exception	: yes
cpuid level	: 22
wp		: yes
flags		: $flags
bugs		: spectre_v1 spectre_v2 spec_store_bypass swapgs taa itlb_multihit mmio_stale_data retbleed gds
bogomips	: 4200.00
clflush size	: 64
cache_alignment	: 64
address sizes	: 46 bits physical, 48 bits virtual
power management:

"
done
put proc/cpuinfo "$cpuinfo"
put sys/devices/system/cpu/online 0-79
put sys/devices/system/cpu/cpufreq/boost 1
put sys/devices/system/cpu/cpuidle/current_driver intel_idle
memory_blocks 192 80000000
meminfo 395859804
i=0
for d in a b c d e f g h; do
	disk "sd$d" 15628053168 1 "ST8000NM0055-1RM" "ZA1F0C$((40 + i))" "naa.5000c500b1a2c3$((10 + i))"
	i=$((i + 1))
done
disk sdi 1875385008 0 "MZ7LH960HAJR0D3" "S45NNE0M512345" "naa.5002538e40a1b2c1"
disk sdj 1875385008 0 "MZ7LH960HAJR0D3" "S45NNE0M512346" "naa.5002538e40a1b2c2"
disk nvme0n1 3750748848 0 "Dell Ent NVMe CM6 RI 1.92TB" "Z0L0A04HTB8E" "eui.00000000000000018ce38e0300a1b2c3"
disk nvme1n1 3750748848 0 "Dell Ent NVMe CM6 RI 1.92TB" "Z0L0A04HTB8F" "eui.00000000000000018ce38e0300a1b2c4"
put sys/block/loop0/size 0
put sys/block/loop0/queue/rotational 0
put sys/block/dm-0/size 1875380224
put sys/block/sr0/size 2097151
put sys/block/sr0/device/model "DVD+-RW DU-8A5LH"
nic eno1 "e4:43:4b:1a:2b:3c" tg3 1000 1 up
nic eno2 "e4:43:4b:1a:2b:3d" tg3 - - down
nic ens2f0np0 "B8:59:9F:C0:FF:10" mlx5_core 25000 1 up
nic ens2f1np1 "b8:59:9f:c0:ff:11" mlx5_core 25000 1 up
virtual_nic bond0 "b8:59:9f:c0:ff:10"
virtual_nic docker0 "02:42:ac:11:00:01"
put sys/class/net/lo/address "00:00:00:00:00:00"

# -------------------------------------------------------------- supermicro-1u
T=$here/supermicro-1u
rm -rf "$T"
dmi "Supermicro" "SYS-5019C-MR" "S349872X9A12345" "00000000-0000-0000-0000-AC1F6B8E1234"
put sys/class/dmi/id/chassis_serial "0123456789"
flags="fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb invpcid_single ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust sgx bmi1 avx2 smep bmi2 erms invpcid mpx rdseed adx smap clflushopt intel_pt xsaveopt xsavec xgetbv1 xsaves dtherm ida arat pln pts hwp hwp_notify hwp_act_window hwp_epp md_clear flush_l1d arch_capabilities"
cpuinfo=""
for ((cpu = 0; cpu < 12; cpu++)); do
	cpuinfo+="processor	: $cpu
vendor_id	: GenuineIntel
cpu family	: 6
model		: 158
model name	: Intel(R) Xeon(R) E-2236 CPU @ 3.40GHz
stepping	: 10
physical id	: 0
siblings	: 12
core id		: $((cpu % 6))
cpu cores	: 6
flags		: $flags
bogomips	: 6799.81

"
done
put proc/cpuinfo "$cpuinfo"
meminfo 32657784
disk sda 1000215216 0 "Samsung SSD 860" "S3Z9NB0K123456X" "naa.5002538e4012ab34"
disk sdb 7814037168 1 "WDC WD40EFRX-68N" "WD-WCC7K1ABCDEF" "naa.50014ee2b1234567"
nic eno1 "ac:1f:6b:8e:12:34" igb 1000 1 up
nic eno2 "ac:1f:6b:8e:12:35" igb -1 0 down
put sys/class/net/lo/address "00:00:00:00:00:00"

# --------------------------------------------------------------- ampere-altra
T=$here/ampere-altra
rm -rf "$T"
dmi "GIGABYTE" "R152-P31-00" "GJH3N1012A0001" "2B7A9C10-5E3F-11EB-8001-B42E99A1B2C3"
put sys/firmware/efi/fw_platform_size 64
put proc/sys/kernel/arch aarch64
cpuinfo=""
for ((cpu = 0; cpu < 32; cpu++)); do
	topology "$cpu" 0 "$cpu"
	cpuinfo+="processor	: $cpu
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1

"
done
put proc/cpuinfo "$cpuinfo"
memory_blocks 128 40000000
meminfo 131369808
disk nvme0n1 1875385008 0 "SAMSUNG MZQL2960HCJR-00A07" "S64FNE0R901234" "eui.36344630529012340025384500000001"
nic enp1s0f0np0 "0c:42:a1:5e:6f:70" mlx5_core 25000 1 up
nic enp1s0f1np1 "0c:42:a1:5e:6f:71" mlx5_core - - down
virtual_nic virbr0 "52:54:00:12:34:56"
put sys/class/net/lo/address "00:00:00:00:00:00"
