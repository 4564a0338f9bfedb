package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/internal/needs"
)

// TestEtcdOutage runs two `matchbox serve` instances on a 3-member etcd,
// in network namespaces on one bridge, and stops every etcd member. The
// instances then serve from their last snapshot: /ipxe, TFTP and the
// renewal of a known lease (acknowledged for the time left on the stored
// lease, not extended) work; a catalog write answers 503
// storage_unavailable and a new client gets no address; /healthz and
// /metrics say degraded. Once etcd is back, without a restart, both
// report healthy again, a write through one is served by the other (the
// watch is back), a new client gets an address and a renewal extends.
func TestEtcdOutage(t *testing.T) {
	l := newEtcdLab(t)
	if out, _ := exec.Command("curl", "--version").Output(); !bytes.Contains(out, []byte("tftp")) {
		needs.Skip(t, "this curl has no tftp:// support (Debian curl has it)")
	}
	root := t.TempDir()
	payload := bytes.Repeat([]byte("ipxe"), 3000)
	if err := os.WriteFile(filepath.Join(root, "undionly.kpxe"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	ranges := [2]string{"10.77.1.10-10.77.1.60", "10.77.2.10-10.77.2.60"}
	var srv [2]*labServer
	for k := range 2 {
		srv[k] = l.serve(k, "outage", ranges[k], "--tftp-addr", l.serverIP(k)+":69", "--tftp-root", root)
	}
	for _, w := range [][2]string{
		{"/api/v1/profiles/base", `{"id": "base", "boot": {"kernel": "/k/base"}}`},
		{"/api/v1/groups/default", `{"id": "default", "profile": "base"}`},
	} {
		if err := l.put(srv[0].URL+w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	clients := l.addClients(2)
	known, fresh := clients[0], clients[1]
	first, ok, why := l.dhcp(known.iface, known.mac, 8)
	if !ok {
		t.Fatalf("before the outage: %s", why)
	}
	waitFor := func(what string, within time.Duration, cond func() (bool, string)) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			ok, last := cond()
			if ok {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s: not within %v; last: %s", what, within, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	health := func(prefix string) func() (bool, string) {
		return func() (bool, string) {
			for _, s := range srv {
				code, body, err := l.get(s.URL + "/healthz")
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, prefix) {
					return false, s.URL + ": " + body
				}
			}
			return true, ""
		}
	}
	degradedMetric := func(s *labServer) string {
		_, body, _ := l.get(s.URL + "/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, `matchbox_store_degraded{reason="storage_unavailable"}`) {
				return line
			}
		}
		return "(no matchbox_store_degraded for storage_unavailable)"
	}

	for i := range 3 {
		l.cluster.StopMember(i)
	}
	took := waitFor("both instances report degraded", 20*time.Second, health("degraded: storage_unavailable"))
	t.Logf("both instances report degraded %v after the last etcd member stopped", took.Round(10*time.Millisecond))
	for k, s := range srv {
		if m := degradedMetric(s); !strings.HasSuffix(m, " 1") {
			t.Errorf("instance %d /metrics while etcd is lost: %s", k, m)
		}
		code, body, err := l.get(s.URL + "/ipxe?mac=52:54:00:aa:00:01")
		if err != nil || code != http.StatusOK || !strings.Contains(body, "/k/base") {
			t.Errorf("instance %d /ipxe while etcd is lost: %d %v %s", k, code, err, body)
		}
		out, err := exec.Command("ip", "netns", "exec", l.ns("e"), "curl", "-fsS", "--max-time", "20", "tftp://"+l.serverIP(k)+"/undionly.kpxe").Output()
		if err != nil || !bytes.Equal(out, payload) {
			t.Errorf("instance %d TFTP while etcd is lost: %v, %d bytes of %d", k, err, len(out), len(payload))
		}
		code, body, err = l.putStatus(s.URL+"/api/v1/profiles/lost", `{"id": "lost", "boot": {"kernel": "/k/lost"}}`)
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "storage_unavailable") {
			t.Errorf("instance %d catalog write while etcd is lost: %d %v %s, want 503 storage_unavailable", k, code, err, body)
		} else if k == 0 {
			t.Logf("a write while etcd is lost answers %d: %s", code, strings.Join(strings.Fields(body), " "))
		}
	}
	// The known client renews: the same address, for no longer than its
	// stored lease has left.
	renewed, ok, why := l.dhcp(known.iface, known.mac, 8)
	left := first.Lease - time.Since(first.At)
	switch {
	case !ok:
		t.Errorf("renewal of a known lease while etcd is lost: %s", why)
	case renewed.IP != first.IP:
		t.Errorf("renewal while etcd is lost acknowledged %s, want the stored lease's %s", renewed.IP, first.IP)
	case renewed.Lease > left+2*time.Second || renewed.Lease <= 0:
		t.Errorf("renewal while etcd is lost acknowledged %v, more than the %v left on the stored lease", renewed.Lease, left)
	default:
		t.Logf("renewal while etcd is lost: %s acknowledged for %v (stored lease: %v left)", renewed.IP, renewed.Lease, left.Round(time.Second))
	}
	if a, ok, _ := l.dhcp(fresh.iface, fresh.mac, 3); ok {
		t.Errorf("a new client got %s from %s while etcd is lost: a new allocation cannot be committed", a.IP, a.Server)
	}

	for i := range 3 {
		l.cluster.StartMember(i)
	}
	took = waitFor("both instances report ok again", 60*time.Second, health("ok"))
	t.Logf("both instances report ok %v after etcd was started again", took.Round(10*time.Millisecond))
	for k, s := range srv {
		if m := degradedMetric(s); !strings.HasSuffix(m, " 0") {
			t.Errorf("instance %d /metrics once etcd is back: %s", k, m)
		}
	}
	if err := l.put(srv[0].URL+"/api/v1/profiles/after", `{"id": "after", "boot": {"kernel": "/k/after"}}`); err != nil {
		t.Fatalf("write once etcd is back: %v", err)
	}
	if err := l.put(srv[0].URL+"/api/v1/groups/after", `{"id": "after", "profile": "after", "selector": {"mac": "52:54:00:bb:00:01"}}`); err != nil {
		t.Fatalf("write once etcd is back: %v", err)
	}
	took = waitFor("the other instance serves a write made once etcd is back", 10*time.Second, func() (bool, string) {
		_, body, _ := l.get(srv[1].URL + "/ipxe?mac=52:54:00:bb:00:01")
		return strings.Contains(body, "/k/after"), body
	})
	t.Logf("write through one instance served by the other %v later (its watch is back)", took.Round(time.Millisecond))
	if a, ok, why := l.dhcp(fresh.iface, fresh.mac, 8); !ok {
		t.Errorf("a new client once etcd is back: %s", why)
	} else {
		l.checkUnique("outage", []ack{a})
	}
	if a, ok, why := l.dhcp(known.iface, known.mac, 8); !ok || a.Lease < first.Lease-2*time.Second {
		t.Errorf("renewal once etcd is back: %+v %v %s, want a lease of %v", a, ok, why, first.Lease)
	}
}
