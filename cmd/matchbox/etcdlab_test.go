package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"matchbox/api/wire"
	"matchbox/internal/needs"
	"matchbox/internal/netnstest"
	"matchbox/store/etcdstore/etcdtest"
)

// etcdLab is one L2 segment for several `matchbox serve` instances that
// share a 3-member etcd cluster, all in network namespaces of the test's
// own: namespace E holds the bridge (10.77.0.1/16) and the etcd members
// listening on it; instance k runs in namespace S<k> on a veth into the
// bridge (10.77.0.<2+k>); DHCP clients run in namespace C on veths into
// the bridge. The test reaches HTTP and etcd from namespace E.
type etcdLab struct {
	t       *testing.T
	bin, bb string
	prefix  string // namespace and interface name prefix
	cluster *etcdtest.Cluster
	http    *http.Client
	tokens  string // --api-token-file: labToken, admin
	clients int    // client veths made so far
	br      *netnstest.Bridge
}

const (
	labBridgeIP = "10.77.0.1"
	// labBridgeMAC keeps the bridge's MAC fixed: otherwise a client veth
	// added later with a lower MAC changes it, and the instances' ARP
	// entries for etcd (on the bridge) go stale, cutting them off from etcd.
	labBridgeMAC = "02:00:00:77:00:01"
	labToken     = "etcd-lab-token-0123456789"
)

func newEtcdLab(t *testing.T) *etcdLab {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root to create network namespaces, a bridge and veth pairs")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		needs.Skip(t, "needs busybox (Debian busybox-static) for udhcpc")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		needs.Skip(t, "etcd binary not installed (Debian: apt-get install etcd-server): cannot run a real etcd cluster")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	l := &etcdLab{t: t, bin: bin, bb: bb, prefix: fmt.Sprintf("mbf%d", os.Getpid()%100000)}
	l.tokens = filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(l.tokens, []byte(labToken+" admin lab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, ns := range []string{"c", "s0", "s1", "s2", "e"} {
			exec.Command("ip", "netns", "del", l.ns(ns)).Run()
		}
	})
	l.ip("netns", "add", l.ns("e"))
	l.ip("netns", "add", l.ns("c"))
	l.ip("-n", l.ns("e"), "link", "set", "lo", "up")
	l.br = netnstest.NewBridge(t, l.ns("e"), "br0", labBridgeMAC, labBridgeIP+"/16")
	for k := range 3 {
		s := l.ns(fmt.Sprintf("s%d", k))
		l.ip("netns", "add", s)
		l.ip("-n", s, "link", "set", "lo", "up")
		l.br.Port(t, s, "eth0")
		l.ip("-n", s, "addr", "add", l.serverIP(k)+"/16", "dev", "eth0")
	}
	l.cluster = etcdtest.StartWith(t, 3, etcdtest.Options{Netns: l.ns("e"), Host: labBridgeIP})
	dial := netnstest.DialContext(l.ns("e"))
	l.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	return l
}

func (l *etcdLab) ns(name string) string { return l.prefix + "-" + name }

func (l *etcdLab) serverIP(k int) string { return fmt.Sprintf("10.77.0.%d", 2+k) }

func (l *etcdLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// labClient is a DHCP client interface in namespace C.
type labClient struct {
	n          int // its number, in its MACs
	iface, mac string
}

// addClients makes n client interfaces c<i> in namespace C.
func (l *etcdLab) addClients(n int) []labClient {
	l.t.Helper()
	var out []labClient
	for range n {
		c := labClient{n: l.clients, iface: fmt.Sprintf("c%d", l.clients), mac: labMAC(l.clients, 0)}
		l.clients++
		l.br.Port(l.t, l.ns("c"), c.iface)
		l.ip("-n", l.ns("c"), "link", "set", c.iface, "address", c.mac)
		out = append(out, c)
	}
	return out
}

func labMAC(client, round int) string {
	return fmt.Sprintf("02:77:%02x:%02x:%02x:%02x", client>>8&0xff, client&0xff, round>>8&0xff, round&0xff)
}

// store is the --store location of installation prefix p.
func (l *etcdLab) store(p string) string {
	var hosts []string
	for _, e := range l.cluster.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",") + "/" + p
}

// labServer is one `matchbox serve` in its namespace.
type labServer struct {
	k    int
	URL  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	logs strings.Builder
}

func (s *labServer) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// serve starts instance k on installation prefix p, serving DHCP on
// dhcpRange, and waits until its HTTP listener is up.
func (l *etcdLab) serve(k int, p, dhcpRange string, extra ...string) *labServer {
	l.t.Helper()
	addr := net.JoinHostPort(l.serverIP(k), "8080")
	s := &labServer{k: k, URL: "http://" + addr, args: append([]string{
		"netns", "exec", l.ns(fmt.Sprintf("s%d", k)), l.bin, "serve",
		"--data-dir", l.t.TempDir(), "--assets-dir", "-", "--store", l.store(p),
		"--http-addr", addr, "--etcd-instance-ttl", "2s",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "eth0", "--dhcp-range", dhcpRange,
		"--boot-url", "http://" + addr, "--api-token-file", l.tokens}, extra...)}
	if os.Getenv("MATCHBOX_LAB_DEBUG") == "1" {
		s.args = append(s.args, "--log-level", "debug")
	}
	l.start(s)
	l.t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	return s
}

// start runs s's command and waits until it serves HTTP.
func (l *etcdLab) start(s *labServer) {
	l.t.Helper()
	s.cmd = exec.Command("ip", s.args...)
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	s.done = make(chan struct{})
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			s.mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if strings.Contains(sc.Text(), `msg="matchbox serving"`) {
				once.Do(func() { close(up) })
			}
		}
		s.cmd.Wait()
		close(s.done)
	}()
	select {
	case <-up:
	case <-s.done:
		l.t.Fatalf("instance %d exited before serving; logs:\n%s", s.k, s.Logs())
	case <-time.After(60 * time.Second):
		l.t.Fatalf("instance %d did not serve within 60s; logs:\n%s", s.k, s.Logs())
	}
}

// stop signals s and waits until it has exited.
func (s *labServer) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// ack is one address a DHCP client was acknowledged.
type ack struct {
	MAC, IP, Server string
	Lease           time.Duration // the lease time acknowledged
	At              time.Time
}

// dhcp runs udhcpc once on client interface iface, whose MAC is mac, and
// returns what it was acknowledged; ok is false when it got no lease.
func (l *etcdLab) dhcp(iface, mac string, tries int) (ack, bool, string) {
	dir := l.t.TempDir()
	script := filepath.Join(dir, "script")
	out := filepath.Join(dir, "out")
	os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $serverid $lease\" > %s\nexit 0\n", out)), 0o755)
	res, err := exec.Command("ip", "netns", "exec", l.ns("c"), l.bb, "udhcpc", "-i", iface, "-n", "-q", "-f",
		"-t", fmt.Sprint(tries), "-T", "1", "-A", "1", "-s", script).CombinedOutput()
	b, _ := os.ReadFile(out)
	f := strings.Fields(string(b))
	if err != nil || len(f) != 3 {
		return ack{}, false, fmt.Sprintf("udhcpc -i %s: %v\n%s", iface, err, res)
	}
	secs, _ := strconv.Atoi(f[2])
	return ack{MAC: mac, IP: f[0], Server: f[1], Lease: time.Duration(secs) * time.Second, At: time.Now()}, true, ""
}

// setMAC gives client interface iface a new MAC.
func (l *etcdLab) setMAC(iface, mac string) {
	l.t.Helper()
	l.ip("-n", l.ns("c"), "link", "set", iface, "address", mac)
}

// get answers the status and body of a GET from namespace E.
func (l *etcdLab) get(url string) (int, string, error) {
	return l.do(http.MethodGet, url, "")
}

// put PUTs a JSON body and returns an error unless it was acknowledged (2xx).
func (l *etcdLab) put(url, body string) error {
	code, answer, err := l.putStatus(url, body)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("PUT %s: %d: %s", url, code, answer)
	}
	return nil
}

// putStatus PUTs a JSON body and returns the answer's status and body.
func (l *etcdLab) putStatus(url, body string) (int, string, error) {
	return l.do(http.MethodPut, url, body)
}

// do sends a request with the lab's token (and body as JSON, if any) from
// namespace E and returns the answer's status and body.
func (l *etcdLab) do(method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+labToken)
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// leases reads every lease of installation p straight from etcd (etcdctl
// in namespace E), by address.
func (l *etcdLab) leases(p string) map[string]labLease {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("e"), "etcdctl", "--endpoints", strings.Join(l.cluster.Endpoints, ","),
		"get", "--prefix", "/"+p+"/leases/", "-w", "json")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("etcdctl get leases: %v", err)
	}
	var r struct {
		KVs []struct {
			Key, Value []byte
		} `json:"kvs"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		l.t.Fatalf("etcdctl output: %v\n%s", err, out)
	}
	m := map[string]labLease{}
	for _, kv := range r.KVs {
		var v labLease
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			l.t.Fatalf("lease %s: %v: %s", kv.Key, err, kv.Value)
		}
		m[strings.TrimPrefix(string(kv.Key), "/"+p+"/leases/")] = v
	}
	return m
}

// labLease is a stored lease as etcd holds it.
type labLease struct {
	MAC     string `json:"mac"`
	Expires int64  `json:"expires"`
	State   string `json:"state"`
}

// checkUnique fails the test unless every address is acknowledged to one
// MAC, every stored bound lease names a distinct MAC, and every
// acknowledged lease is stored, bound, for its MAC.
func (l *etcdLab) checkUnique(p string, acks []ack) {
	l.t.Helper()
	byIP := map[string]string{}
	for _, a := range acks {
		if m, ok := byIP[a.IP]; ok && m != a.MAC {
			l.t.Errorf("address %s acknowledged to two MACs: %s and %s", a.IP, m, a.MAC)
		}
		byIP[a.IP] = a.MAC
	}
	stored := l.leases(p)
	macs := map[string]string{}
	bound := 0
	for ip, ls := range stored {
		if ls.State != "bound" {
			continue
		}
		bound++
		if other, ok := macs[ls.MAC]; ok {
			l.t.Errorf("MAC %s holds two bound leases in etcd: %s and %s", ls.MAC, other, ip)
		}
		macs[ls.MAC] = ip
	}
	for ip, mac := range byIP {
		if ls, ok := stored[ip]; !ok || ls.State != "bound" || !strings.EqualFold(ls.MAC, mac) {
			l.t.Errorf("acknowledged lease %s → %s is not stored bound in etcd: %+v", ip, mac, ls)
		}
	}
	l.t.Logf("%d addresses acknowledged, %d bound leases in etcd, none held twice", len(byIP), bound)
}

// instances lists the instances an instance's API reports.
func (l *etcdLab) instances(url string) ([]wire.Item, error) {
	code, body, err := l.get(url + "/api/v1/instances")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/instances: %d %s", code, body)
	}
	var list wire.List
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("GET /api/v1/instances: %w", err)
	}
	return list.Items, nil
}

// inRange reports whether ip is within "START-END".
func inRange(ip, r string) bool {
	a, err := netip.ParseAddr(ip)
	lo, hi, _ := strings.Cut(r, "-")
	if err != nil {
		return false
	}
	return a.Compare(netip.MustParseAddr(lo)) >= 0 && a.Compare(netip.MustParseAddr(hi)) <= 0
}
