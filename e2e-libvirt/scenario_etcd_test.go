package e2elibvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/api/wire"
	"matchbox/internal/needs"
	"matchbox/internal/netnstest"
	"matchbox/store/etcdstore/etcdtest"
)

// The backbone of TestEtcdTwoInstances: a namespace of its own holds the
// etcd members on a bridge, and each lab joins that bridge through a veth
// (uplinkName in the lab's namespace) with an address of backboneSubnet.
// The VMs' segments stay apart: the backbone carries only etcd's traffic.
const (
	backboneBridge = "etcd0"
	backboneMAC    = "02:00:00:99:fa:01"
	backboneEtcdIP = "10.99.250.1"
	uplinkName     = "uplink0"
	// etcdPrefix is the installation both instances share (--store
	// etcd://.../e2e).
	etcdPrefix = "e2e"
)

// etcdSites are the two sites of TestEtcdTwoInstances: site A on the
// default segment, site B on a bridge, subnet and DHCP range of its own.
// Each has one VM, on the cheapest firmware path (SeaBIOS with the e1000
// NIC ROM's iPXE).
func etcdSites() []etcdSite {
	b := segment{
		Bridge: "br1", BridgeMAC: "02:00:00:99:01:01",
		ServerIP: "10.99.1.1", ServerCIDR: "10.99.1.1/24", ServerIPv6: "fd99:1::1/64",
		RangeStart: "10.99.1.100", RangeEnd: "10.99.1.199", Subnet: "10.99.1.0/24",
	}
	return []etcdSite{
		{name: "a", seg: defaultSegment(), spec: vmSpec{Name: "site-a", Firmware: firmwareBIOS, NIC: "e1000", MAC: macFor(8, 0)}},
		{name: "b", seg: b, spec: vmSpec{Name: "site-b", Firmware: firmwareBIOS, NIC: "e1000", MAC: macFor(8, 1)}},
	}
}

// etcdSite is one lab of TestEtcdTwoInstances with its matchbox instance
// and its VM.
type etcdSite struct {
	name string
	seg  segment
	spec vmSpec

	lab *lab
	srv *matchboxServer
	m   machine
	bmc *vmBMC
}

// TestEtcdTwoInstances is the scale-out scenario: two `matchbox serve`
// instances share one installation in a real 3-member etcd cluster, each
// serving DHCP (authoritative), TFTP and HTTP on a segment of its own (its
// own lab: namespace, bridge, subnet, DHCP range, VM driver). Only
// instance A imports a data directory (one profile whose kernel arguments
// name {{.matchbox_url}}, a group per VM); instance B starts with an empty
// one and serves its VM from the catalog A wrote. One VM on each segment
// boots at the same time to its first-boot config. Then each VM's timeline
// must read the same from both instances' APIs, each VM's lease (from its
// own instance's range) must be listed by the other instance and stored
// bound in etcd, and `matchbox get instances` on each instance must list
// both instances with their addresses and ranges.
func TestEtcdTwoInstances(t *testing.T) {
	requireLab(t)
	for _, tool := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skipf(t, "%s not installed (Debian etcd-server, etcd-client): this scenario runs a real 3-member etcd cluster", tool)
		}
	}
	start := time.Now()
	dir := outDir(t)
	sites := etcdSites()
	for i := range sites {
		s := &sites[i]
		s.lab = newLabWith(t, labOptions{Dir: filepath.Join(dir, "site-"+s.name), Segment: &s.seg})
	}
	if a, b := sites[0].lab.Driver.Name(), sites[1].lab.Driver.Name(); a != b {
		t.Fatalf("the two labs got different VM drivers (%s, %s): set E2E_DRIVER", a, b)
	}
	t.Logf("VM driver of both sites: %s", sites[0].lab.Driver.Name())

	// etcd: three members in a namespace of their own, reached by both
	// labs over the backbone. A run interrupted before the cluster's own
	// cleanup leaves no etcd process behind: the namespace's processes
	// are killed before it is deleted.
	etcdNS := newBareNS(t)
	addCleanup(t, func() { killNamespacePIDs(etcdNS.Name) })
	backbone := netnstest.NewBridge(t, etcdNS.Name, backboneBridge, backboneMAC, backboneEtcdIP+"/24")
	for i, s := range sites {
		backbone.Port(t, s.lab.NS.Name, uplinkName)
		s.lab.NS.ip(t, "addr", "add", fmt.Sprintf("10.99.250.%d/24", 2+i), "dev", uplinkName)
	}
	cluster := etcdtest.StartWith(t, 3, etcdtest.Options{Netns: etcdNS.Name, Host: backboneEtcdIP})
	var hosts []string
	for _, e := range cluster.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	storeURL := "etcd://" + strings.Join(hosts, ",") + "/" + etcdPrefix
	t.Logf("etcd: 3 members in namespace %s (%s); store %s", etcdNS.Name, strings.Join(cluster.Endpoints, " "), storeURL)

	tos := buildTestOS(t)
	assets := filepath.Join(dir, "assets")
	writeAssets(t, assets, tos)
	var nodes []node
	for _, s := range sites {
		nodes = append(nodes, node{Name: s.spec.Name, MAC: s.spec.MAC})
	}
	// One catalog for both sites: the kernel arguments name the instance
	// that serves the boot ({{.matchbox_url}}, its --boot-url), not one
	// address.
	dataA, dataB := filepath.Join(dir, "data-a"), filepath.Join(dir, "data-b")
	writeDataDir(t, dataA, "{{.matchbox_url}}", "scale-out", nodes)
	if err := os.MkdirAll(dataB, 0o755); err != nil {
		t.Fatal(err)
	}
	_, help := buildMatchbox(t)
	if !hasTFTP(help) {
		t.Fatal("matchbox serve has no --tftp-addr: this scenario needs matchbox's own TFTP server")
	}
	for i := range sites {
		s := &sites[i]
		data := dataA
		if i > 0 {
			data = dataB
		}
		s.lab.startDnsmasq(t, "dnsmasq-ra", dnsmasqOptions{}) // router advertisements only
		s.srv = startMatchbox(t, s.lab, data, assets, serverOptions{
			DHCPMode: "authoritative", Store: storeURL,
			ExtraArgs: []string{"--etcd-instance-ttl", "5s"},
		})
	}
	for i := range sites {
		s := &sites[i]
		s.m = s.lab.Driver.Define(t, s.spec)
		s.bmc = startBMC(t, s.lab, s.m)
	}
	t.Logf("set-up (labs, etcd, test OS, two instances) took %.1fs", time.Since(start).Seconds())

	vmStart := time.Now()
	t.Run("boot", func(t *testing.T) {
		for _, s := range sites {
			t.Run(s.spec.Name, func(t *testing.T) {
				t.Parallel()
				res := bootThroughBMC(context.Background(), t, s.bmc, s.m, s.spec.Name)
				recordBoot("etcd", s.spec.Name, s.lab.Driver.Name(), res)
			})
		}
	})
	if t.Failed() {
		return
	}
	vms := time.Since(vmStart)

	for i, s := range sites {
		other := sites[1-i]
		t.Run("timeline-"+s.spec.Name, func(t *testing.T) {
			assertTimelineEverywhere(t, s, other)
		})
		t.Run("lease-"+s.spec.Name, func(t *testing.T) {
			assertLeaseShared(t, s, other, etcdNS, cluster.Endpoints)
		})
	}
	for _, s := range sites {
		t.Run("instances-from-"+s.name, func(t *testing.T) {
			assertInstancesListed(t, s, sites)
		})
	}
	total := time.Since(start)
	t.Logf("scale-out scenario: both VMs booted in %.1fs, whole scenario %.1fs", vms.Seconds(), total.Seconds())
	record("%-30s %-7s whole scenario %5.1fs (VMs %5.1fs)", "etcd", sites[0].lab.Driver.Name(), total.Seconds(), vms.Seconds())
}

// assertTimelineEverywhere checks that the timeline of s's VM, whose boot
// s's instance served (its DHCP acknowledgements carry that instance's
// boot file and an address of its range), reads the same from the other
// instance's API: every event, in the same order, with the same ids.
func assertTimelineEverywhere(t *testing.T, s, other etcdSite) {
	t.Helper()
	want := knownTimeline(s.spec, s.srv.TFTP)
	own := assertTimeline(t, s.srv, s.spec.MAC, want)
	for _, e := range own {
		if e.Type != "dhcp.ack" {
			continue
		}
		ip, _ := e.Detail["ip"].(string)
		if !inSegmentRange(ip, s.seg) {
			t.Errorf("dhcp.ack of %s gave %q, outside site %s's range %s", s.spec.MAC, ip, s.name, s.seg.DHCPRange())
		}
		if bf, _ := e.Detail["boot_file"].(string); bf != "" && !strings.HasPrefix(bf, s.srv.BootBase+"/") {
			t.Errorf("dhcp.ack of %s named boot file %q, not one of site %s's instance (%s)", s.spec.MAC, bf, s.name, s.srv.BootBase)
		}
	}
	// The other instance reads the same store: it must answer the same
	// timeline once the recorder has written everything.
	var diff, lastErr string
	deadline := time.Now().Add(30 * time.Second)
	for {
		mine, theirs, err := bothTimelines(s, other)
		if err == nil {
			diff = cmp.Diff(mine, theirs)
			if diff == "" && missingInOrder(theirs, want) == "" {
				t.Logf("timeline of %s (booted at site %s) reads the same from site %s's instance: %d events", s.spec.MAC, s.name, other.name, len(theirs))
				return
			}
		} else {
			lastErr = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeline of %s: site %s's instance does not answer what site %s's does (-%s +%s):\n%s\nlast error: %s",
				s.spec.MAC, other.name, s.name, s.name, other.name, diff, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// bothTimelines reads the timeline of s's VM from s's instance and from
// other's.
func bothTimelines(s, other etcdSite) (mine, theirs []event, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if mine, err = s.srv.Events(ctx, s.spec.MAC); err != nil {
		return nil, nil, fmt.Errorf("site %s: %w", s.name, err)
	}
	if theirs, err = other.srv.Events(ctx, s.spec.MAC); err != nil {
		return nil, nil, fmt.Errorf("site %s: %w", other.name, err)
	}
	return mine, theirs, nil
}

// assertLeaseShared checks that the lease s's instance acknowledged to its
// VM (the address of its last dhcp.ack) is listed, bound, by the other
// instance's API and stored bound for the VM's MAC in etcd itself.
func assertLeaseShared(t *testing.T, s, other etcdSite, etcdNS *netNS, endpoints []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evs, err := s.srv.Events(ctx, s.spec.MAC)
	if err != nil {
		t.Fatalf("timeline of %s: %v", s.spec.MAC, err)
	}
	acked := ""
	for _, e := range evs {
		if e.Type == "dhcp.ack" {
			acked, _ = e.Detail["ip"].(string)
		}
	}
	if !inSegmentRange(acked, s.seg) {
		t.Fatalf("last dhcp.ack of %s gave %q, outside site %s's range %s", s.spec.MAC, acked, s.name, s.seg.DHCPRange())
	}
	var list wire.List
	if err := other.srv.getJSON(ctx, "/api/v1/leases?mac="+url.QueryEscape(s.spec.MAC), &list); err != nil {
		t.Fatalf("leases of %s from site %s's instance: %v", s.spec.MAC, other.name, err)
	}
	var bound []string
	for _, it := range list.Items {
		if it.Lease != nil && it.Lease.State == "bound" {
			bound = append(bound, it.Lease.IP)
		}
	}
	if diff := cmp.Diff([]string{acked}, bound); diff != "" {
		t.Fatalf("bound leases of %s listed by site %s's instance (-acknowledged by site %s +listed):\n%s", s.spec.MAC, other.name, s.name, diff)
	}
	stored := etcdLeases(t, etcdNS, endpoints)
	got, ok := stored[acked]
	if !ok || got.State != "bound" || normMAC(got.MAC) != normMAC(s.spec.MAC) {
		t.Fatalf("etcd holds %+v (present: %v) under /%s/leases/%s; want bound for %s", got, ok, etcdPrefix, acked, s.spec.MAC)
	}
	t.Logf("lease %s → %s: acknowledged by site %s, listed by site %s's instance, bound in etcd", acked, s.spec.MAC, s.name, other.name)
}

// assertInstancesListed checks that `matchbox get instances`, run against
// s's instance, lists both instances: each with its HTTP address and the
// DHCP range of its site.
func assertInstancesListed(t *testing.T, s etcdSite, sites []etcdSite) {
	t.Helper()
	want := map[string][]string{}
	for _, x := range sites {
		want[x.seg.ServerIP+":"+httpPort] = []string{x.seg.DHCPRange()}
	}
	bin, _ := buildMatchbox(t)
	// The CLI runs in the site's namespace, as an operator on that
	// instance's host would (the API answers loopback clients there).
	var got map[string][]string
	var out []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd := s.lab.NS.Command(bin, "get", "instances", "--endpoint", "http://"+s.srv.APIAddr, "-o", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("matchbox get instances on site %s: %v: %s", s.name, err, stderr.Bytes())
		}
		got, err = instancesByHTTPAddr(out)
		if err != nil {
			t.Fatalf("matchbox get instances on site %s: %v\n%s", s.name, err, out)
		}
		if cmp.Diff(want, got) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("matchbox get instances on site %s (-want +got, by HTTP address):\n%s\n%s", s.name, cmp.Diff(want, got), out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("matchbox get instances on site %s lists both: %v", s.name, got)
}

// instancesByHTTPAddr reads `matchbox get instances -o json` (a list of
// instances) and returns each instance's DHCP ranges by its addresses on a
// segment (its loopback API address left out).
func instancesByHTTPAddr(out []byte) (map[string][]string, error) {
	var list []wire.Instance
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	got := map[string][]string{}
	for _, in := range list {
		for _, a := range in.Addresses {
			if strings.HasPrefix(a, "127.") {
				continue
			}
			ranges := append([]string(nil), in.DHCPRanges...)
			sort.Strings(ranges)
			got[a] = ranges
		}
	}
	return got, nil
}

// storedLease is a lease as etcd holds it.
type storedLease struct {
	MAC   string `json:"mac"`
	State string `json:"state"`
}

// etcdLeases reads every lease of the installation straight from etcd
// (etcdctl in the cluster's namespace), by address.
func etcdLeases(t *testing.T, ns *netNS, endpoints []string) map[string]storedLease {
	t.Helper()
	prefix := "/" + etcdPrefix + "/leases/"
	cmd := ns.Command("etcdctl", "--endpoints", strings.Join(endpoints, ","), "get", "--prefix", prefix, "-w", "json")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcdctl get --prefix %s: %v", prefix, err)
	}
	var r struct {
		KVs []struct{ Key, Value []byte } `json:"kvs"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("etcdctl output: %v\n%s", err, out)
	}
	m := map[string]storedLease{}
	for _, kv := range r.KVs {
		var v storedLease
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			t.Fatalf("lease %s: %v: %s", kv.Key, err, kv.Value)
		}
		m[strings.TrimPrefix(string(kv.Key), prefix)] = v
	}
	return m
}

// inSegmentRange reports whether ip is an address of seg's DHCP range.
func inSegmentRange(ip string, seg segment) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return a.Compare(netip.MustParseAddr(seg.RangeStart)) >= 0 && a.Compare(netip.MustParseAddr(seg.RangeEnd)) <= 0
}

// normMAC is a MAC in lower case with colons, whatever notation it came in.
func normMAC(mac string) string {
	return strings.ToLower(strings.ReplaceAll(mac, "-", ":"))
}
