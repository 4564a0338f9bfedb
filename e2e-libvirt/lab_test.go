package e2elibvirt

import (
	"fmt"
	"os"
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

// newLab creates a scenario's namespace and folder and picks its driver.
func newLab(t testing.TB) *lab {
	t.Helper()
	requireLab(t)
	l := &lab{NS: newNetNS(t), Dir: outDir(t), t: t}
	l.Driver = newDriver(t, l)
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
	ns, iface := l.NS, bridgeName
	if opts.Host != nil {
		ns, iface = opts.Host, "eth0"
	} else {
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:"+bridgeName+",ra-only")
	}
	args = append(args, "--interface="+iface)
	if opts.TFTPRoot != "" {
		args = append(args, "--enable-tftp", "--tftp-root="+opts.TFTPRoot, "--log-queries")
	}
	if opts.DHCP {
		args = append(args,
			fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,1h", rangeStart, rangeEnd),
			"--dhcp-option=option:router,"+serverIP,
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
