package netnstest

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPairConnectsAndIsRemoved: a listener opened in the server namespace
// is reached from the client namespace over the veth pair, not from the
// test's own namespace, and both namespaces are gone after the subtest.
func TestPairConnectsAndIsRemoved(t *testing.T) {
	Require(t)
	var p *Pair
	t.Run("pair", func(t *testing.T) {
		p = NewPair(t, "nt", "10.9.77.1/24")
		IP(t, "-n", p.Client, "addr", "add", "10.9.77.2/24", "dev", ClientIface)
		if !strings.HasPrefix(p.Server, Prefix+"-nts-") || !strings.HasPrefix(p.Client, Prefix+"-ntc-") {
			t.Errorf("namespace names %q %q lack the prefix %q", p.Server, p.Client, Prefix)
		}
		var ln net.Listener
		if err := Do(p.Server, func() (err error) { ln, err = net.Listen("tcp", "10.9.77.1:0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hello"))
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := DialContext(p.Client)(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial from the client namespace: %v", err)
		}
		b := make([]byte, 5)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(b); string(b[:n]) != "hello" {
			t.Errorf("read %q over the veth pair, want hello", b[:n])
		}
		c.Close()
		// The test's own namespace has no route to 10.9.77.1 through the pair.
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("the server namespace's listener is reachable from the test's namespace")
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{p.Server, p.Client} {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s left after its test ended", ns)
		}
	}
}

// TestBridgeConnectsPorts: two namespaces with a port each on a bridge
// reach each other and the bridge's own address, the bridge keeps its
// fixed MAC after ports with lower MACs are added, and every port is a
// port of the bridge.
func TestBridgeConnectsPorts(t *testing.T) {
	Require(t)
	hub, a, c := New(t, "ntb"), New(t, "nta"), New(t, "ntc")
	const mac = "02:00:00:98:00:01"
	br := NewBridge(t, hub, "br0", mac, "10.9.78.1/24")
	pa := br.Port(t, a, "eth0")
	pc := br.Port(t, c, "eth0")
	// Ports with MACs below the bridge's: a bridge without a fixed
	// address would take the lowest of them.
	IP(t, "-n", a, "link", "set", "eth0", "address", "02:00:00:00:00:0a")
	IP(t, "-n", hub, "link", "set", pa, "address", "00:00:00:00:00:0a")
	IP(t, "-n", a, "addr", "add", "10.9.78.2/24", "dev", "eth0")
	IP(t, "-n", c, "addr", "add", "10.9.78.3/24", "dev", "eth0")
	for _, p := range []string{pa, pc} {
		out, err := exec.Command("ip", "-n", hub, "-o", "link", "show", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "master br0") {
			t.Errorf("port %s is not on the bridge: %v: %s", p, err, out)
		}
	}
	out, err := exec.Command("ip", "-n", hub, "-o", "link", "show", "br0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "link/ether "+mac) {
		t.Errorf("bridge lost its MAC %s: %v: %s", mac, err, out)
	}
	var ln net.Listener
	if err := Do(a, func() (err error) { ln, err = net.Listen("tcp", "10.9.78.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, from := range []string{c, hub} {
		conn, err := DialContext(from)(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %s from namespace %s over the bridge: %v", ln.Addr(), from, err)
		}
		conn.Close()
	}
}
