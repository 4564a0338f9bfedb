// Package storm simulates many machines network-booting at once against a
// provisioning server: each machine, with its own MAC, gets an address by
// DHCP (DISCOVER, OFFER, REQUEST, ACK over a raw socket), fetches its boot
// binary over TFTP, then /boot.ipxe, its iPXE script, the kernel and
// initrds the script names and its config over HTTP. It reports
// completions, failures and latency percentiles per stage and overall.
//
// The targets are addresses, not a matchbox: the same storm runs against
// dnsmasq and nginx.
package storm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
)

// Stage names, in the order a machine goes through them.
const (
	StageDHCP     = "dhcp"
	StageTFTP     = "tftp"
	StageBootIPXE = "boot.ipxe"
	StageIPXE     = "ipxe"
	StageKernel   = "kernel"
	StageInitrd   = "initrd"
	StageConfig   = "config"
)

// stageOrder lists the stage names in order.
var stageOrder = []string{StageDHCP, StageTFTP, StageBootIPXE, StageIPXE, StageKernel, StageInitrd, StageConfig}

// Config says what to storm and how.
type Config struct {
	// Machines is the number of simulated machines (default 100).
	Machines int
	// Concurrency is the number of machines booting at once (default: all).
	Concurrency int
	// Interface is the network interface DHCP is done on, with a raw
	// socket (root). Empty skips DHCP.
	Interface string
	// DHCPTimeout is how long a machine waits for a DHCP answer before
	// sending again, doubled at each try as PXE ROMs do (default 2s);
	// DHCPTries is how many times it sends (default 5: 62s at most).
	DHCPTimeout time.Duration
	DHCPTries   int
	// MACPrefix is the first three bytes of every machine's MAC (default
	// 52:54:01); the other three number the machine.
	MACPrefix [3]byte
	// TFTPAddr is the TFTP server, host:port. Empty skips TFTP.
	TFTPAddr string
	// TFTPFile is the file to fetch when DHCP did not name one (default
	// undionly.kpxe).
	TFTPFile string
	// TFTPBlockSize is the block size asked for (default 1432, as iPXE).
	TFTPBlockSize int
	// HTTPBase is the HTTP server's base URL, http://host:port. Empty
	// skips the HTTP stages.
	HTTPBase string
	// ConfigPath is the config fetched last, {mac} replaced by the
	// machine's MAC (default /ignition?mac={mac}). "-" skips it.
	ConfigPath string
	// StageTimeout bounds each TFTP and HTTP stage (default 60s).
	StageTimeout time.Duration
	// HTTPClient fetches the HTTP stages (default: a client with keep-alive
	// per machine off, as firmware does).
	HTTPClient *http.Client
}

func (c *Config) defaults() {
	if c.Machines <= 0 {
		c.Machines = 100
	}
	if c.Concurrency <= 0 || c.Concurrency > c.Machines {
		c.Concurrency = c.Machines
	}
	if c.DHCPTimeout <= 0 {
		c.DHCPTimeout = 2 * time.Second
	}
	if c.DHCPTries <= 0 {
		c.DHCPTries = 5
	}
	if c.MACPrefix == [3]byte{} {
		c.MACPrefix = [3]byte{0x52, 0x54, 0x01}
	}
	if c.TFTPFile == "" {
		c.TFTPFile = "undionly.kpxe"
	}
	if c.TFTPBlockSize <= 0 {
		c.TFTPBlockSize = 1432
	}
	if c.ConfigPath == "" {
		c.ConfigPath = "/ignition?mac={mac}"
	}
	if c.StageTimeout <= 0 {
		c.StageTimeout = 60 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}}
	}
}

// Report is the outcome of a storm.
type Report struct {
	Machines  int           `json:"machines"`
	Completed int           `json:"completed"`
	Failed    int           `json:"failed"`
	Duration  time.Duration `json:"duration_ns"`
	// Stages holds the latencies of each stage that ran, by name.
	Stages map[string]Stats `json:"stages"`
	// Overall is the latency of whole boots, first packet to last byte.
	Overall Stats `json:"overall"`
	// Bytes is the number of bytes received over TFTP and HTTP.
	Bytes int64 `json:"bytes"`
	// Failures holds the first failures, "machine MAC: stage: error".
	Failures []string `json:"failures,omitempty"`
}

// Stats are the latencies of one stage over the machines that passed it.
type Stats struct {
	Count  int           `json:"count"`
	Failed int           `json:"failed"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
	// Peak is the most machines that were in this stage at once (those
	// that failed in it included): a stage's latencies depend on it, and
	// it differs between servers whose earlier stages let machines through
	// at different rates.
	Peak int `json:"peak"`
}

func (s Stats) String() string {
	return fmt.Sprintf("%5d ok %4d failed  p50 %8s  p99 %8s  max %8s  peak %5d", s.Count, s.Failed,
		s.P50.Round(time.Microsecond*100), s.P99.Round(time.Microsecond*100), s.Max.Round(time.Microsecond*100), s.Peak)
}

// String formats the report as a table.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machines %d  completed %d  failed %d  in %s  (%d MB received)\n", r.Machines, r.Completed, r.Failed, r.Duration.Round(time.Millisecond), r.Bytes>>20)
	for _, name := range stageOrder {
		if s, ok := r.Stages[name]; ok {
			fmt.Fprintf(&b, "  %-10s %s\n", name, s)
		}
	}
	fmt.Fprintf(&b, "  %-10s %s\n", "overall", r.Overall)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  failure: %s\n", f)
	}
	return b.String()
}

// maxFailures is how many failure messages a report keeps.
const maxFailures = 20

// machine is one simulated machine's progress.
type machine struct {
	mac      net.HardwareAddr
	ip       net.IP
	bootFile string
	tftpAddr string
	lat      map[string]time.Duration
	spans    map[string]span // when the machine entered and left each stage it ran
	bytes    int64
	stage    string
	err      error
}

// Run storms the targets of cfg and reports; it fails only when the storm
// cannot start (no interface, no raw socket).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	var dc *dhcpClient
	if cfg.Interface != "" {
		var err error
		if dc, err = newDHCPClient(cfg.Interface); err != nil {
			return nil, err
		}
		defer dc.close()
	}
	machines := make([]*machine, cfg.Machines)
	for i := range machines {
		machines[i] = &machine{
			mac:   net.HardwareAddr{cfg.MACPrefix[0], cfg.MACPrefix[1], cfg.MACPrefix[2], byte(i >> 16), byte(i >> 8), byte(i)},
			lat:   map[string]time.Duration{},
			spans: map[string]span{},
		}
	}
	start := time.Now()
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for _, m := range machines {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			m.err = m.boot(ctx, &cfg, dc)
			if m.err == nil {
				m.lat["overall"] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	rep := &Report{Machines: cfg.Machines, Duration: time.Since(start), Stages: map[string]Stats{}}
	samples := map[string][]time.Duration{}
	failed := map[string]int{}
	spans := map[string][]span{}
	for _, m := range machines {
		rep.Bytes += m.bytes
		for k, sp := range m.spans {
			spans[k] = append(spans[k], sp)
		}
		for k, d := range m.lat {
			samples[k] = append(samples[k], d)
		}
		if m.err != nil {
			rep.Failed++
			failed[m.stage]++
			if len(rep.Failures) < maxFailures {
				rep.Failures = append(rep.Failures, fmt.Sprintf("machine %s: %s: %v", m.mac, m.stage, m.err))
			}
			continue
		}
		rep.Completed++
	}
	for _, name := range stageOrder {
		if len(samples[name]) > 0 || failed[name] > 0 {
			st := stats(samples[name], failed[name])
			st.Peak = peak(spans[name])
			rep.Stages[name] = st
		}
	}
	rep.Overall = stats(samples["overall"], rep.Failed)
	return rep, nil
}

// span is the time a machine spent in one stage, from its start to its end.
type span struct{ start, end time.Time }

// peak returns the most spans that overlap at one instant; a span that
// ends when another starts does not overlap it.
func peak(spans []span) int {
	type edge struct {
		at    time.Time
		delta int
	}
	edges := make([]edge, 0, 2*len(spans))
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // ends before starts at the same instant
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

func stats(d []time.Duration, failed int) Stats {
	s := Stats{Count: len(d), Failed: failed}
	if len(d) == 0 {
		return s
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(float64(len(d))*p))] }
	s.P50, s.P99, s.Max = pct(0.50), pct(0.99), d[len(d)-1]
	return s
}

// boot runs the stages of one machine, stopping at the first failure.
func (m *machine) boot(ctx context.Context, cfg *Config, dc *dhcpClient) error {
	run := func(name string, fn func(ctx context.Context) error) error {
		m.stage = name
		t0 := time.Now()
		err := fn(ctx)
		t1 := time.Now()
		m.spans[name] = span{t0, t1}
		if err != nil {
			return err
		}
		m.lat[name] = t1.Sub(t0)
		return nil
	}
	if dc != nil {
		if err := run(StageDHCP, func(ctx context.Context) error { return m.dhcp(ctx, cfg, dc) }); err != nil {
			return err
		}
	}
	if cfg.TFTPAddr != "" {
		if err := run(StageTFTP, func(ctx context.Context) error { return m.tftp(ctx, cfg) }); err != nil {
			return err
		}
	}
	if cfg.HTTPBase == "" {
		return nil
	}
	base, err := url.Parse(cfg.HTTPBase)
	if err != nil {
		m.stage = StageBootIPXE
		return fmt.Errorf("HTTP base %q: %w", cfg.HTTPBase, err)
	}
	if err := run(StageBootIPXE, func(ctx context.Context) error {
		_, err := m.get(ctx, cfg, base, "/boot.ipxe", false)
		return err
	}); err != nil {
		return err
	}
	var script string
	if err := run(StageIPXE, func(ctx context.Context) error {
		var err error
		script, err = m.get(ctx, cfg, base, "/ipxe?mac="+m.mac.String(), true)
		return err
	}); err != nil {
		return err
	}
	kernel, initrds := ParseIPXE(script)
	if kernel == "" {
		m.stage = StageIPXE
		return fmt.Errorf("iPXE script names no kernel: %.200q", script)
	}
	if err := run(StageKernel, func(ctx context.Context) error {
		_, err := m.get(ctx, cfg, base, m.expand(kernel), false)
		return err
	}); err != nil {
		return err
	}
	if len(initrds) > 0 {
		if err := run(StageInitrd, func(ctx context.Context) error {
			for _, u := range initrds {
				if _, err := m.get(ctx, cfg, base, m.expand(u), false); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if cfg.ConfigPath != "-" {
		if err := run(StageConfig, func(ctx context.Context) error {
			_, err := m.get(ctx, cfg, base, strings.ReplaceAll(cfg.ConfigPath, "{mac}", m.mac.String()), false)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// expand replaces the iPXE variables a machine would fill in.
func (m *machine) expand(s string) string {
	return strings.NewReplacer(
		"${mac:hexhyp}", strings.ReplaceAll(m.mac.String(), ":", "-"),
		"${mac}", m.mac.String(), "${net0/mac}", m.mac.String(),
		"${uuid}", "", "${serial}", "", "${hostname}", "", "${domain}", "",
		"${buildarch}", "i386", "${platform}", "pcbios",
	).Replace(s)
}

// get fetches path (absolute URL or relative to base) and returns its body
// when keep is set.
func (m *machine) get(ctx context.Context, cfg *Config, base *url.URL, path string, keep bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.StageTimeout)
	defer cancel()
	u, err := base.Parse(path)
	if err != nil {
		return "", fmt.Errorf("URL %q: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	if keep {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		m.bytes += int64(len(b))
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", u, err)
		}
		return string(b), nil
	}
	n, err := io.Copy(io.Discard, resp.Body)
	m.bytes += n
	if err != nil {
		return "", fmt.Errorf("GET %s: after %d bytes: %w", u, n, err)
	}
	return "", nil
}

// tftp fetches the boot file DHCP named (or cfg.TFTPFile).
func (m *machine) tftp(ctx context.Context, cfg *Config) error {
	file := m.bootFile
	if file == "" {
		file = cfg.TFTPFile
	}
	c, err := tftp.NewClient(cfg.TFTPAddr)
	if err != nil {
		return fmt.Errorf("TFTP client for %s: %w", cfg.TFTPAddr, err)
	}
	c.SetBlockSize(cfg.TFTPBlockSize)
	c.SetTimeout(2 * time.Second)
	c.SetRetries(5)
	// Firmware sends its ACK again when its timer expires; pin's default
	// backoff sleeps up to 1s more before each retransmission, which
	// would add to every lost packet's cost on both sides of a storm.
	c.SetBackoff(func(int) time.Duration { return 0 })
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		wt, err := c.Receive(file, "octet")
		if err != nil {
			done <- result{err: err}
			return
		}
		n, err := wt.WriteTo(io.Discard)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		m.bytes += r.n
		if r.err != nil {
			return fmt.Errorf("TFTP %s from %s: %w", file, cfg.TFTPAddr, r.err)
		}
		if r.n == 0 {
			return fmt.Errorf("TFTP %s from %s: empty file", file, cfg.TFTPAddr)
		}
		return nil
	case <-time.After(cfg.StageTimeout):
		return fmt.Errorf("TFTP %s from %s: %w", file, cfg.TFTPAddr, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParseIPXE returns the kernel and initrd URLs an iPXE script names (the
// first argument of its kernel, and of each initrd, line that is not an
// option).
func ParseIPXE(script string) (kernel string, initrds []string) {
	for line := range strings.Lines(script) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		arg := ""
		for i := 1; i < len(f); i++ {
			a := f[i]
			if !strings.HasPrefix(a, "-") {
				arg = a
				break
			}
			if ipxeValueOption(a) { // --name NAME, --timeout MS: skip the value
				i++
			}
		}
		switch f[0] {
		case "kernel", "chain":
			if f[0] == "kernel" && kernel == "" {
				kernel = arg
			}
		case "initrd":
			if arg != "" {
				initrds = append(initrds, arg)
			}
		}
	}
	return kernel, initrds
}

// ipxeValueOption reports the options of iPXE's image commands that take their
// value as the next word.
func ipxeValueOption(opt string) bool {
	switch opt {
	case "--name", "-n", "--timeout", "-t":
		return true
	}
	return false
}

// errNoAnswer is a DHCP exchange that got no answer after every try.
var errNoAnswer = errors.New("no answer")
