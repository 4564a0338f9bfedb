package e2elibvirt

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lab is one scenario's isolated world: a namespace with a bridge, a
// folder for logs and state, the IPv6 router advertisements iPXE waits for,
// and the VM driver.
type lab struct {
	// NS is the namespace.
	NS *netNS
	// Dir holds the scenario's logs and state (kept on failure).
	Dir string
	// Driver powers the VMs.
	Driver driver
	// Seg is the addressing of the lab's segment.
	Seg segment

	t    testing.TB
	kept []string
}

// dnsmasqOptions choose what the lab's dnsmasq does beside sending RAs.
type dnsmasqOptions struct {
	// TFTPRoot, when set, serves TFTP from that folder.
	TFTPRoot string
	// DHCP, when set, hands out addresses from the lab's range (no boot
	// options unless Extra adds them).
	DHCP bool
	// Host, when set, runs dnsmasq in that namespace on its eth0 (a
	// separate host on the segment) instead of on the lab's bridge.
	Host *netNS
	// Extra are more dnsmasq options (--dhcp-boot=..., --dhcp-userclass=...).
	Extra []string
}

// labOptions place a lab beside others of the same test.
type labOptions struct {
	// Dir is the lab's folder (default: the test's output folder).
	Dir string
	// Segment is the addressing of its segment (default defaultSegment).
	Segment *segment
}

// newLab creates a scenario's namespace (on the default segment) and folder
// and picks its driver.
func newLab(t testing.TB) *lab {
	t.Helper()
	return newLabWith(t, labOptions{})
}

// newLabWith creates a lab as opts say: several labs of one test each take
// their own folder and segment.
func newLabWith(t testing.TB, opts labOptions) *lab {
	t.Helper()
	requireLab(t)
	seg := defaultSegment()
	if opts.Segment != nil {
		seg = *opts.Segment
	}
	dir := opts.Dir
	if dir == "" {
		dir = outDir(t)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("lab folder: %v", err)
	}
	l := &lab{NS: newNetNS(t, seg), Dir: dir, Seg: seg, t: t}
	l.Driver = newDriver(t, l)
	if os.Getenv("E2E_PCAP") != "" {
		l.capture(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var names []string
			for _, k := range l.kept {
				names = append(names, filepath.Join(l.Dir, k))
			}
			t.Logf("logs of the failed scenario: %s", strings.Join(names, " "))
		}
	})
	return l
}

// keep names a log file in the lab folder for the failure message.
func (l *lab) keep(name string) { l.kept = append(l.kept, name) }

// startDnsmasq runs a dnsmasq on the lab's bridge that sends IPv6 router
// advertisements (without them iPXE waits about 15 s per boot) and, as
// asked, serves TFTP and DHCP. It binds the bridge only.
func (l *lab) startDnsmasq(t testing.TB, name string, opts dnsmasqOptions) *process {
	t.Helper()
	args := []string{
		"--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
		"--pid-file=" + filepath.Join(l.Dir, name+".pid"),
		"--port=0", "--bind-interfaces", "--except-interface=lo", "--log-dhcp",
	}
	ns, iface := l.NS, l.Seg.Bridge
	if opts.Host != nil {
		ns, iface = opts.Host, "eth0"
	} else {
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:"+l.Seg.Bridge+",ra-only")
	}
	args = append(args, "--interface="+iface)
	if opts.TFTPRoot != "" {
		args = append(args, "--enable-tftp", "--tftp-root="+opts.TFTPRoot, "--log-queries")
	}
	if opts.DHCP {
		args = append(args,
			fmt.Sprintf("--dhcp-range=%s,%s,%s,1h", l.Seg.RangeStart, l.Seg.RangeEnd, l.Seg.Netmask()),
			"--dhcp-option=option:router,"+l.Seg.ServerIP,
			"--dhcp-leasefile="+filepath.Join(l.Dir, name+".leases"),
			"--dhcp-authoritative")
	}
	args = append(args, opts.Extra...)
	logPath := filepath.Join(l.Dir, name+".log")
	p := startProcess(t, name, ns.Command("dnsmasq", args...), logPath, 2*time.Second)
	l.keep(name + ".log")
	time.Sleep(300 * time.Millisecond)
	if p.Exited() {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("dnsmasq %s exited at start: %v: %s", name, p.err, b)
	}
	return p
}

// capture records the bridge's traffic in lab.pcap (E2E_PCAP=1; off by
// default): DHCP, TFTP and HTTP of every boot with their timestamps, the
// first 600 bytes of each packet. It needs tcpdump.
func (l *lab) capture(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("E2E_PCAP is set but tcpdump is missing: %v", err)
	}
	name := "lab.pcap"
	p := startProcess(t, "tcpdump", l.NS.Command("tcpdump", "-i", l.Seg.Bridge, "-U", "-s", "600", "-w", filepath.Join(l.Dir, name)),
		filepath.Join(l.Dir, "tcpdump.log"), 2*time.Second)
	l.keep(name)
	time.Sleep(300 * time.Millisecond)
	if p.Exited() {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "tcpdump.log"))
		t.Fatalf("tcpdump exited at start: %v: %s", p.err, b)
	}
}
