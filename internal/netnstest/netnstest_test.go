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
