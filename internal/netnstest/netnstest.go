// Package netnstest gives tests network namespaces joined by veth pairs,
// runs code and dials inside them, and runs busybox udhcpc in them.
//
// Every namespace it creates is named Prefix-TAG-PID-N and removed when the
// test ends (t.Cleanup); its veth pairs are created inside the namespaces
// and go with them. A leftover after a killed test run is recognisable by
// its prefix: `ip netns list | grep ^mbt-`.
package netnstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"matchbox/internal/needs"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "mbt"

// BridgeMAC is an address to give a test bridge when it is made. A bridge
// without an address of its own takes the lowest MAC of its ports, so a
// port added later can change it, and the neighbours' ARP entries for the
// bridge's IP go stale until they expire: traffic to it is lost meanwhile.
const BridgeMAC = "02:00:00:00:00:01"

// Require skips t (through needs.Skip, which fails instead under
// MATCHBOX_TEST_NO_SKIP=1) unless the test runs as root with ip(8) and
// each of cmds on the PATH.
func Require(t testing.TB, cmds ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root to create network namespaces and veth pairs")
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(c); err != nil {
			needs.Skip(t, fmt.Sprintf("needs %s on the PATH (%s)", c, debianPackage(c)))
		}
	}
}

func debianPackage(cmd string) string {
	switch cmd {
	case "ip":
		return "Debian iproute2"
	case "busybox":
		return "Debian busybox-static, for udhcpc"
	}
	return "see .ci/apt-packages"
}

// IP runs ip(8) with args and fails t when it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// New creates a network namespace named Prefix-tag-PID-N with its loopback
// up, deleted when t ends, and returns its name. tag says which test made
// it (a few letters).
func New(t testing.TB, tag string) string {
	t.Helper()
	Require(t)
	name := fmt.Sprintf("%s-%s-%d-%06x", Prefix, tag, os.Getpid(), rand.Uint32()&0xffffff)
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth creates a veth pair with one end in namespace nsA named a and the
// other in nsB named b, both up. The pair is created directly inside the
// namespaces (under a unique temporary name, then renamed), so it never
// appears in the test's own namespace and goes when they are deleted.
func Veth(t testing.TB, nsA, a, nsB, b string) {
	t.Helper()
	tok := rand.Uint32() & 0xffffff // interface names are at most 15 bytes
	ta, tb := fmt.Sprintf("%sa%06x", Prefix, tok), fmt.Sprintf("%sb%06x", Prefix, tok)
	IP(t, "link", "add", ta, "netns", nsA, "type", "veth", "peer", "name", tb, "netns", nsB)
	IP(t, "-n", nsA, "link", "set", ta, "name", a)
	IP(t, "-n", nsB, "link", "set", tb, "name", b)
	IP(t, "-n", nsA, "link", "set", a, "up")
	IP(t, "-n", nsB, "link", "set", b, "up")
}

// Pair is two namespaces joined by one veth pair: interface "vS" in
// Server, "vC" in Client.
type Pair struct {
	// Server and Client are the namespaces' names.
	Server, Client string
}

// Server-side and client-side interface names of a Pair.
const (
	ServerIface = "vS"
	ClientIface = "vC"
)

// NewPair creates a Pair; serverAddr (a prefix such as "10.9.0.1/24", or
// "" for none) is put on vS. Everything is removed when t ends.
func NewPair(t testing.TB, tag, serverAddr string) *Pair {
	t.Helper()
	p := &Pair{Server: New(t, tag+"s"), Client: New(t, tag+"c")}
	Veth(t, p.Server, ServerIface, p.Client, ClientIface)
	if serverAddr != "" {
		IP(t, "-n", p.Server, "addr", "add", serverAddr, "dev", ServerIface)
	}
	return p
}

// Do runs fn on an OS thread switched into network namespace ns: sockets
// fn opens live in ns (and keep living there after Do returns). The
// calling goroutine's thread is switched back afterwards; if that fails
// the thread stays locked and ends with the goroutine.
func Do(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open the thread's network namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("restore the thread's network namespace after %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// DialContext returns a dial function (for http.Transport.DialContext)
// whose connections are opened in network namespace ns.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Udhcpc runs busybox udhcpc once on iface in namespace ns (-n -q -f:
// exit after a lease or after its tries) with extra arguments (tries,
// timeouts, options) and returns the variables its script saw on "bound",
// or an error with udhcpc's output when it got no lease.
func Udhcpc(t testing.TB, ns, iface string, args ...string) (map[string]string, error) {
	t.Helper()
	Require(t, "busybox")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := filepath.Join(dir, "script")
	body := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = bound ] && env > %s\nexit 0\n", out)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return nil, fmt.Errorf("write the udhcpc script: %w", err)
	}
	cmd := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", iface, "-n", "-q", "-f", "-s", script}, args...)
	if b, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("udhcpc %s in %s: %w\n%s", strings.Join(args, " "), ns, err, b)
	}
	env, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("udhcpc in %s got no lease: %w", ns, err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// Bridge is a Linux bridge inside a network namespace: the segment of a
// bridge lab, to which Port adds veth pairs into other namespaces. It is
// removed with its namespace.
type Bridge struct {
	// NS is the namespace holding the bridge; Name is its interface name.
	NS, Name string
	ports    int
}

// NewBridge creates bridge name in namespace ns with the fixed MAC mac
// (see BridgeMAC), STP off and no forward delay, with addrs (prefixes such
// as "10.77.0.1/16") on it, and brings it up.
func NewBridge(t testing.TB, ns, name, mac string, addrs ...string) *Bridge {
	t.Helper()
	IP(t, "-n", ns, "link", "add", name, "address", mac, "type", "bridge", "forward_delay", "0", "stp_state", "0")
	for _, a := range addrs {
		IP(t, "-n", ns, "addr", "add", a, "dev", name)
	}
	IP(t, "-n", ns, "link", "set", name, "up")
	return &Bridge{NS: ns, Name: name}
}

// Port creates a veth pair with one end named iface in namespace ns and
// the other a port of the bridge (named <bridge>p<N> in the bridge's
// namespace), both up, and returns the port's name.
func (b *Bridge) Port(t testing.TB, ns, iface string) string {
	t.Helper()
	port := fmt.Sprintf("%sp%d", b.Name, b.ports)
	b.ports++
	Veth(t, b.NS, port, ns, iface)
	IP(t, "-n", b.NS, "link", "set", port, "master", b.Name)
	return port
}
