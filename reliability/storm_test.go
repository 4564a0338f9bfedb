package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/bench/storm"
)

// stormData writes a data directory: one default group whose profile
// boots a kernel and an initrd from the assets directory, an Ignition
// config, and an iPXE binary for TFTP.
func stormData(t *testing.T, dir string) {
	t.Helper()
	files := map[string][]byte{
		"profiles/node.json": []byte(`{"id": "node", "boot": {"kernel": "/assets/node/vmlinuz", "initrd": ["/assets/node/initrd.img"],
  "args": ["initrd=initrd.img", "ignition.config.url=http://` + serverIP + `:8080/ignition?mac=${mac:hexhyp}"]}, "ignition_id": "node.ign"}`),
		"groups/default.json":       []byte(`{"id": "default", "profile": "node"}`),
		"ignition/node.ign":         []byte(`{"ignition": {"version": "3.3.0"}}`),
		"assets/node/vmlinuz":       bytes.Repeat([]byte("k"), 256<<10),
		"assets/node/initrd.img":    bytes.Repeat([]byte("i"), 1<<20),
		"assets/tftp/undionly.kpxe": bytes.Repeat([]byte("x"), 70<<10),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// probe is what a poller measured during the storm.
type probe struct {
	mu       sync.Mutex
	latency  map[string][]time.Duration
	failures []string
	peakRSS  int64
}

// poll probes /healthz and the API every 100ms and samples the server's
// RSS, until ctx ends.
func (p *probe) poll(ctx context.Context, srv *server) {
	paths := []string{"/healthz", "/api/v1/profiles", "/api/v1/machines?limit=10"}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if rss := rssOf(srv.pid()); rss > p.peakRSS {
			p.peakRSS = rss
		}
		for _, path := range paths {
			t0 := time.Now()
			resp, err := srv.client.Get(srv.base + path)
			d := time.Since(t0)
			p.mu.Lock()
			switch {
			case err != nil:
				p.failures = append(p.failures, fmt.Sprintf("%s: %v", path, err))
			case resp.StatusCode != http.StatusOK:
				p.failures = append(p.failures, fmt.Sprintf("%s: %s", path, resp.Status))
			default:
				p.latency[path] = append(p.latency[path], d)
			}
			p.mu.Unlock()
			if resp != nil {
				resp.Body.Close()
			}
		}
	}
}

// rssOf is a process's resident set in bytes (0 when unknown).
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestBootStorm boots simulated machines all at once through matchbox's
// DHCP, TFTP and HTTP (bench/storm in a client namespace): every one must
// complete, the server's RSS must stay bounded, and /healthz and the API,
// probed every 100ms meanwhile, must answer every probe (their latencies
// are reported; the 1 s bound is asserted with a margin, as the machine is
// shared).
func TestBootStorm(t *testing.T) {
	needBinaries(t)
	needRoot(t)
	n := 150
	if *long {
		n = 1000
	}
	if *stormSize > 0 {
		n = *stormSize
	}
	const (
		maxRSS     = 512 << 20
		probeBound = 1 * time.Second
		margin     = 3
	)
	l := newLab(t, 1)
	run(t, "ip", "-n", l.cli, "addr", "add", "10.77.0.2/16", "dev", "c0")
	dir := t.TempDir()
	stormData(t, dir)
	srv := newServer(t, l.srv, dir, "0.0.0.0:8080",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "br0", "--dhcp-range", dhcpRange,
		"--boot-url", "http://"+serverIP+":8080", "--tftp-addr", serverIP+":69")
	srv.start()
	rssBefore := rssOf(srv.pid())

	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{latency: map[string][]time.Duration{}}
	done := make(chan struct{})
	go func() { p.poll(ctx, srv); close(done) }()
	// Stages are bounded (TFTP is lock-step: a thousand transfers at once
	// on a shared machine take their time) and so is the whole storm.
	stormCtx, stormCancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer stormCancel()
	cmd := exec.CommandContext(stormCtx, "ip", "netns", "exec", l.cli, bins.storm, "-json", "-n", strconv.Itoa(n), "-iface", "c0",
		"-tftp", serverIP+":69", "-http", "http://"+serverIP+":8080", "-stage-timeout", "120s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	cancel()
	<-done
	var rep storm.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("storm: %v (%v): %s %s", err, jerr, out, stderr.String())
	}
	t.Logf("storm of %d machines:\n%s", n, rep.String())
	t.Logf("server RSS: %d MiB before, %d MiB at peak", rssBefore>>20, p.peakRSS>>20)
	for _, path := range []string{"/healthz", "/api/v1/profiles", "/api/v1/machines?limit=10"} {
		if len(p.latency[path]) == 0 {
			t.Errorf("%s answered no probe during the storm", path)
		}
	}
	for path, ds := range p.latency {
		slices.Sort(ds)
		t.Logf("during the storm %-26s %3d probes  p50 %s  p99 %s  max %s", path, len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*99/100].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
		if ds[len(ds)-1] > margin*probeBound {
			t.Errorf("%s took %s during the storm (bound %s, asserted with a margin of %dx)", path, ds[len(ds)-1], probeBound, margin)
		}
	}
	if rep.Completed != n || rep.Failed != 0 {
		t.Errorf("storm: %d of %d machines completed, %d failed", rep.Completed, n, rep.Failed)
	}
	if len(p.failures) > 0 {
		t.Errorf("%d probes failed during the storm, first: %s", len(p.failures), p.failures[0])
	}
	if p.peakRSS > maxRSS {
		t.Errorf("server RSS peaked at %d MiB, bound %d MiB", p.peakRSS>>20, maxRSS>>20)
	}
}
