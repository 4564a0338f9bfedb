package e2elibvirt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"matchbox/internal/netnstest"
)

// Addresses of the default segment, the one every scenario with a single
// lab uses (inside the lab's namespace only).
const (
	bridgeName = "br0"
	// bridgeMAC is the bridge's own address, set so that it never changes:
	// a bridge without one takes the lowest MAC of its ports, so a tap added
	// later could change it and leave the guests' ARP entries for the
	// server stale.
	bridgeMAC  = "02:00:00:99:00:01"
	serverIP   = "10.99.0.1"
	serverCIDR = "10.99.0.1/24"
	serverIPv6 = "fd99::1/64"
	rangeStart = "10.99.0.100"
	rangeEnd   = "10.99.0.199"
	subnetCIDR = "10.99.0.0/24"
)

// segment is the addressing of a lab's L2 segment: its bridge, the
// server's addresses on it and the DHCP range served there. A test that
// runs several labs gives each its own segment.
type segment struct {
	// Bridge is the bridge's interface name; BridgeMAC its fixed address.
	Bridge, BridgeMAC string
	// ServerIP is the server's address on the bridge, ServerCIDR the same
	// with the segment's prefix length, ServerIPv6 its IPv6 prefix (for
	// the router advertisements iPXE waits for).
	ServerIP, ServerCIDR, ServerIPv6 string
	// RangeStart and RangeEnd bound the DHCP range; Subnet is the
	// segment's network.
	RangeStart, RangeEnd, Subnet string
}

// defaultSegment is the segment of a lab made by newLab: the addresses
// above.
func defaultSegment() segment {
	return segment{
		Bridge: bridgeName, BridgeMAC: bridgeMAC,
		ServerIP: serverIP, ServerCIDR: serverCIDR, ServerIPv6: serverIPv6,
		RangeStart: rangeStart, RangeEnd: rangeEnd, Subnet: subnetCIDR,
	}
}

// BootBase is the HTTP base URL of matchbox as the segment's VMs reach it.
func (s segment) BootBase() string { return "http://" + s.ServerIP + ":" + httpPort }

// Netmask is the segment's network mask in dotted form (for dnsmasq); a
// Subnet that is no prefix is a mistake of the test and panics.
func (s segment) Netmask() string {
	bits := netip.MustParsePrefix(s.Subnet).Bits()
	return net.IP(net.CIDRMask(bits, 32)).String()
}

// DHCPRange is the range as `matchbox serve --dhcp-range` takes it.
func (s segment) DHCPRange() string { return s.RangeStart + "-" + s.RangeEnd }

// nsPrefix starts the name of every namespace the harness creates; the
// rest is the test process's PID and a counter, so stale namespaces of dead
// runs can be recognised and removed.
const nsPrefix = "mbe2e-"

// netNS is a network namespace with a bridge, owned by one test.
type netNS struct {
	// Name is the namespace's name (ip netns).
	Name string

	br   *netnstest.Bridge // nil in a bare namespace
	seg  segment           // the bridge's addressing
	mu   sync.Mutex
	taps []string
}

var nsCounter struct {
	sync.Mutex
	n int
}

// newNetNS creates a namespace with loopback up and the bridge of seg
// holding the server's addresses. Everything is removed when t ends (or
// the run is interrupted): deleting the namespace deletes the bridge and
// the taps.
func newNetNS(t testing.TB, seg segment) *netNS {
	t.Helper()
	removeStaleNamespaces(t)
	ns := newBareNS(t)
	ns.seg = seg
	ns.br = netnstest.NewBridge(t, ns.Name, seg.Bridge, seg.BridgeMAC, seg.ServerCIDR)
	ns.ip(t, "addr", "add", seg.ServerIPv6, "dev", seg.Bridge, "nodad")
	return ns
}

// newBareNS creates a namespace with loopback up, removed when t ends.
func newBareNS(t testing.TB) *netNS {
	t.Helper()
	nsCounter.Lock()
	nsCounter.n++
	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsCounter.n)
	nsCounter.Unlock()
	ns := &netNS{Name: name}
	mustRun(t, "ip", "netns", "add", name)
	addCleanup(t, func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: ip netns del %s: %v: %s\n", name, err, out)
		}
	})
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// AddPeerHost creates a second namespace, a host on the segment: a veth
// pair from the bridge to an interface "eth0" holding cidr there. It is
// removed when t ends.
func (ns *netNS) AddPeerHost(t testing.TB, cidr string) *netNS {
	t.Helper()
	peer := newBareNS(t)
	ns.br.Port(t, peer.Name, "eth0")
	peer.ip(t, "addr", "add", cidr, "dev", "eth0")
	return peer
}

// AddTap creates a tap device on the bridge and returns its name.
func (ns *netNS) AddTap(t testing.TB) string {
	t.Helper()
	ns.mu.Lock()
	name := fmt.Sprintf("tap%d", len(ns.taps))
	ns.taps = append(ns.taps, name)
	ns.mu.Unlock()
	ns.ip(t, "tuntap", "add", "dev", name, "mode", "tap")
	ns.ip(t, "link", "set", name, "master", ns.seg.Bridge)
	ns.ip(t, "link", "set", name, "up")
	return name
}

func (ns *netNS) ip(t testing.TB, args ...string) {
	t.Helper()
	mustRun(t, "ip", append([]string{"-n", ns.Name}, args...)...)
}

// Command returns a command that runs name inside the namespace.
func (ns *netNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Dial opens a TCP connection from inside the namespace: the socket is
// created on an OS thread switched into the namespace (and thrown away
// afterwards), so the harness reaches loopback-only listeners there.
func (ns *netNS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread stays locked: it exits with the goroutine instead
		// of going back to the pool in the wrong namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open namespace %s: %w", ns.Name, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter namespace %s: %w", ns.Name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// removeStaleNamespaces deletes namespaces left by harness runs whose
// process is gone (a run killed with SIGKILL cannot clean up).
func removeStaleNamespaces(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		killNamespacePIDs(name)
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("removed stale namespace %s of dead run %d", name, pid)
		}
	}
}

// killNamespacePIDs kills the processes of a stale namespace (QEMU,
// dnsmasq, matchbox of a dead run).
func killNamespacePIDs(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
}

// process is a daemon the harness started; Stop kills it and waits.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts cmd with its output in logPath and stops it (SIGTERM,
// then SIGKILL after grace) when t ends or the run is interrupted.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, logPath string, grace time.Duration) *process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: log file: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("%s: start %s: %v", name, strings.Join(cmd.Args, " "), err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	addCleanup(t, func() { p.Stop(grace) })
	return p
}

// Exited reports whether the process has ended.
func (p *process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, SIGKILL after grace, and waits.
func (p *process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}
