package e2elibvirt

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"matchbox/dhcp"
)

// compareSamples is how many boots of each VM each side of a comparison
// gets (E2E_COMPARE_SAMPLES, default 3).
func compareSamples(t testing.TB) int {
	t.Helper()
	v := os.Getenv("E2E_COMPARE_SAMPLES")
	if v == "" {
		return 3
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("E2E_COMPARE_SAMPLES=%q: want a positive number", v)
	}
	return n
}

// compareSettle is how long a comparison waits after starting a side's
// servers before powering the VMs on.
const compareSettle = 2 * time.Second

// side is one way of serving the VMs in a comparison: start brings its
// servers up, stop takes them down and forgets their leases, so that every
// sample starts cold.
type side struct {
	name  string
	specs []vmSpec
	start func(t testing.TB) (stop func())
}

// comparison boots every VM of each side once per round, the sides taking
// turns to go first, in one lab (so on one VM driver, checked), and records
// power-on to config-fetched times per side and VM.
type comparison struct {
	l      *lab
	bmcs   map[string]*vmBMC
	mach   map[string]machine
	driver string
	times  map[string]map[string][]time.Duration // side, VM
	load   map[string][]float64                  // side: 1-minute load averages around its boots
}

func newComparison(t *testing.T, l *lab, specs []vmSpec) *comparison {
	c := &comparison{l: l, bmcs: map[string]*vmBMC{}, mach: map[string]machine{}, driver: l.Driver.Name(), times: map[string]map[string][]time.Duration{}, load: map[string][]float64{}}
	for _, spec := range specs {
		m := l.Driver.Define(t, spec)
		c.mach[spec.Name] = m
		c.bmcs[spec.Name] = startBMC(t, l, m)
	}
	return c
}

// run runs rounds of the sides, rotating which goes first.
func (c *comparison) run(t *testing.T, rounds int, sides []side) {
	for r := 0; r < rounds; r++ {
		for i := range sides {
			s := sides[(r+i)%len(sides)]
			stop := s.start(t)
			// Every side's servers get the same time to settle before the
			// power-on: the stand-in's start already sleeps after starting
			// dnsmasq and httpd, matchbox's returned as soon as it
			// answered, its start-up work overlapping the firmware.
			time.Sleep(compareSettle)
			c.addLoad(t, s.name)
			t.Run(fmt.Sprintf("round%d/%s", r+1, s.name), func(t *testing.T) {
				for _, spec := range s.specs {
					t.Run(spec.Name, func(t *testing.T) {
						t.Parallel()
						if d := c.l.Driver.Name(); d != c.driver {
							t.Fatalf("VM driver %s, the comparison started on %s", d, c.driver)
						}
						res := bootThroughBMC(context.Background(), t, c.bmcs[spec.Name], c.mach[spec.Name], spec.Name)
						c.add(s.name, spec.Name, res.Config)
					})
				}
			})
			c.addLoad(t, s.name)
			stop()
			if t.Failed() {
				t.FailNow()
			}
		}
	}
}

func (c *comparison) add(side, vm string, d time.Duration) {
	summary.Lock()
	defer summary.Unlock()
	if c.times[side] == nil {
		c.times[side] = map[string][]time.Duration{}
	}
	c.times[side][vm] = append(c.times[side][vm], d)
}

// addLoad records the machine's 1-minute load average for side: the VMs
// run under TCG on shared cores, so a side that boots while the load is
// higher is slower whatever it serves.
func (c *comparison) addLoad(t testing.TB, side string) {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Logf("load average: %v", err)
		return
	}
	l, err := parseLoadAvg(string(b))
	if err != nil {
		t.Logf("load average: %v", err)
		return
	}
	summary.Lock()
	defer summary.Unlock()
	c.load[side] = append(c.load[side], l)
}

// parseLoadAvg returns the 1-minute load average of a /proc/loadavg line.
func parseLoadAvg(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/loadavg: empty")
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/loadavg: 1-minute load %q: %w", f[0], err)
	}
	return l, nil
}

// loadRange prints load averages as "min-max" ("?" when none).
func loadRange(ls []float64) string {
	if len(ls) == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f-%.1f", slices.Min(ls), slices.Max(ls))
}

// report records, per VM, a's and b's samples (median and range), the
// ratio of the medians a/b, every round's ratio in order, and the range of
// the load average while each side ran.
func (c *comparison) report(t testing.TB, title, a, b string) {
	summary.Lock()
	ta, tb := c.times[a], c.times[b]
	la, lb := loadRange(c.load[a]), loadRange(c.load[b])
	summary.Unlock()
	for _, vm := range slices.Sorted(maps.Keys(ta)) {
		sa, sb := ta[vm], tb[vm]
		if len(sb) == 0 {
			continue
		}
		var ratios []float64
		for i := range min(len(sa), len(sb)) {
			ratios = append(ratios, sa[i].Seconds()/sb[i].Seconds())
		}
		rounds := make([]string, len(ratios))
		for i, r := range ratios {
			rounds[i] = fmt.Sprintf("%.2f", r)
		}
		line := fmt.Sprintf("%s %-16s driver %s, %d+%d samples: %s %s / %s %s = %.2f (rounds %s; load %s during %s, %s during %s)",
			title, vm, c.driver, len(sa), len(sb), a, spread(sa), b, spread(sb),
			median(sa).Seconds()/median(sb).Seconds(), strings.Join(rounds, " "), la, a, lb, b)
		t.Log(line)
		record("%s", line)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread prints samples as "median [min-max]".
func spread(ds []time.Duration) string {
	return fmt.Sprintf("%.1fs [%.1f-%.1f]", median(ds).Seconds(), slices.Min(ds).Seconds(), slices.Max(ds).Seconds())
}

// matchboxSide serves the VMs from matchbox (DHCP, TFTP, HTTP) with a fresh
// database each time, and a dnsmasq sending only router advertisements.
func matchboxSide(name string, l *lab, specs []vmSpec, dataDir, assets, tftpRoot string, extra ...string) side {
	return side{name: name, specs: specs, start: func(t testing.TB) func() {
		_, help := buildMatchbox(t)
		dns := dnsmasqOptions{}
		if !hasTFTP(help) {
			dns.TFTPRoot = tftpRoot
		}
		ra := l.startDnsmasq(t, "dnsmasq-ra", dns)
		srv := startMatchbox(t, l, dataDir, assets, serverOptions{DHCPMode: "authoritative", ExtraArgs: extra})
		return func() {
			srv.proc.Stop(5 * time.Second)
			ra.Stop(2 * time.Second)
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(srv.DB + suffix)
			}
		}
	}}
}

// standInSide serves the VMs as a hand-built stand-in would: dnsmasq
// (DHCP without ping, TFTP of the same iPXE binaries, router
// advertisements) and busybox httpd serving static files in the same hops
// as matchbox: boot.ipxe chains to /ipxe, which boots the kernel and initrd
// whose first boot fetches its config.
func standInSide(l *lab, specs []vmSpec, root, tftpRoot string) side {
	efi := dhcp.DefaultBootFiles()[7]
	return side{name: "dnsmasq+httpd", specs: specs, start: func(t testing.TB) func() {
		leases := filepath.Join(l.Dir, "dnsmasq.leases")
		dnsmasq := l.startDnsmasq(t, "dnsmasq", dnsmasqOptions{
			TFTPRoot: tftpRoot,
			DHCP:     true,
			Extra: []string{
				"--no-ping",
				"--dhcp-userclass=set:ipxe,iPXE",
				"--dhcp-match=set:efi64,option:client-arch,7",
				"--dhcp-boot=tag:ipxe," + l.Seg.BootBase() + "/boot.ipxe",
				"--dhcp-boot=tag:!ipxe,tag:efi64," + efi,
				"--dhcp-option=tag:ipxe,encap:175,176,1b",
			},
		})
		logPath := filepath.Join(l.Dir, "httpd.log")
		httpd := startProcess(t, "busybox httpd", l.NS.Command("busybox", "httpd", "-f", "-vv", "-p", l.Seg.ServerIP+":"+httpPort, "-h", root), logPath, time.Second)
		l.keep("httpd.log")
		time.Sleep(200 * time.Millisecond)
		return func() {
			httpd.Stop(time.Second)
			dnsmasq.Stop(2 * time.Second)
			os.Remove(leases)
		}
	}}
}

// TestBootComparison boots scenario 1's VMs (BIOS with the NIC ROM's iPXE,
// UEFI with the firmware's own PXE) from matchbox and from the dnsmasq and
// busybox httpd stand-in, in one lab (one VM driver, printed), the two
// taking turns to go first, E2E_COMPARE_SAMPLES (3) boots each, and records
// matchbox/stand-in per VM: the ratio of the median power-on to config
// fetched times, with the range of the per-round ratios.
func TestBootComparison(t *testing.T) {
	l := newLab(t)
	t.Logf("VM driver for both sides: %s", l.Driver.Name())
	tos := buildTestOS(t)
	specs := withMACs(1, knownVMs)
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	dataDir := filepath.Join(l.Dir, "data")
	writeDataDir(t, dataDir, bootBase, "known", nodesOf(specs))
	www := filepath.Join(l.Dir, "www")
	wwwTFTP := writeAssets(t, filepath.Join(www, "assets"), tos)
	writeStaticBoot(t, www, specs)

	c := newComparison(t, l, specs)
	c.run(t, compareSamples(t), []side{
		matchboxSide("matchbox", l, specs, dataDir, assets, tftpRoot),
		standInSide(l, specs, www, wwwTFTP),
	})
	c.report(t, "matchbox/stand-in", "matchbox", "dnsmasq+httpd")
}

// TestUEFIBootFile measures the x86-64 UEFI boot file: the UEFI VM with the
// firmware's own PXE (OVMF, virtio-net without option ROM) boots from
// matchbox handing it snponly.efi (the iPXE that drives the NIC through the
// firmware's network driver) and ipxe.efi (iPXE's own NIC drivers), taking
// turns, E2E_COMPARE_SAMPLES (3) boots each, and records snponly/ipxe: the
// ratio of the median power-on to config fetched times.
func TestUEFIBootFile(t *testing.T) {
	l := newLab(t)
	tos := buildTestOS(t)
	var specs []vmSpec
	for _, s := range withMACs(1, knownVMs) {
		if s.Firmware == firmwareUEFI && s.NativePXE {
			specs = append(specs, s)
		}
	}
	assets := filepath.Join(l.Dir, "assets")
	tftpRoot := writeAssets(t, assets, tos)
	dataDir := filepath.Join(l.Dir, "data")
	writeDataDir(t, dataDir, bootBase, "known", nodesOf(specs))

	c := newComparison(t, l, specs)
	c.run(t, compareSamples(t), []side{
		matchboxSide("snponly.efi", l, specs, dataDir, assets, tftpRoot, "--dhcp-boot-file", "efi-x86-64=snponly.efi"),
		matchboxSide("ipxe.efi", l, specs, dataDir, assets, tftpRoot, "--dhcp-boot-file", "efi-x86-64=ipxe.efi"),
	})
	c.report(t, "uefi boot file", "snponly.efi", "ipxe.efi")
}

// writeStaticBoot writes the stand-in's web root: boot.ipxe chaining to
// ipxe as matchbox's /boot.ipxe does, ipxe (what matchbox's /ipxe renders
// for the test OS profile), a config per MAC and the done file.
func writeStaticBoot(t testing.TB, root string, specs []vmSpec) {
	t.Helper()
	args := []string{"initrd=initramfs.cpio.gz", "console=ttyS0,115200n8", "panic=-1", "quiet",
		"matchbox.config=" + bootBase + "/ignition/${mac:hexhyp}.json",
		"matchbox.done=" + bootBase + "/done.txt"}
	mustWrite(t, filepath.Join(root, "boot.ipxe"),
		"#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n")
	mustWrite(t, filepath.Join(root, "ipxe"), fmt.Sprintf("#!ipxe\nkernel %s/assets/testos/vmlinuz %s\ninitrd %s/assets/testos/initramfs.cpio.gz\nboot\n",
		bootBase, strings.Join(args, " "), bootBase))
	for _, s := range specs {
		cfg := fmt.Sprintf(`{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,%s"}}]}}`, s.Name)
		mustWrite(t, filepath.Join(root, "ignition", strings.ReplaceAll(s.MAC, ":", "-")+".json"), cfg+"\n")
	}
	mustWrite(t, filepath.Join(root, "done.txt"), "done\n")
}
