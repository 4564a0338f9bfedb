package e2elibvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpPort is matchbox's (and the baseline's) HTTP port on the segment.
const httpPort = "8080"

// apiAddr is where matchbox serves its API, on the namespace's loopback
// (the API answers loopback clients only without a token file).
const apiAddr = "127.0.0.1:8081"

// bootBase is the HTTP base URL VMs of the default segment reach.
const bootBase = "http://" + serverIP + ":" + httpPort

// serverOptions choose how matchbox runs in a scenario.
type serverOptions struct {
	// DHCPMode is authoritative or proxy.
	DHCPMode string
	// ServerIP, when set, is an extra address of the bridge matchbox's
	// DHCP (server identifier) and TFTP use, so that it differs from
	// another DHCP server's on the segment (default: the segment's).
	ServerIP string
	// Store, when set, is the --store location (etcd://...); by default
	// matchbox keeps a SQLite database in the lab's folder.
	Store string
	// ExtraArgs are appended to `matchbox serve`.
	ExtraArgs []string
}

// matchboxServer is a running `matchbox serve` inside a lab's namespace.
type matchboxServer struct {
	// DataDir, DB and Assets are its folders and database (DB is empty
	// when it runs on another store).
	DataDir, DB, Assets string
	// BootBase is its HTTP base URL as VMs reach it; APIAddr is where its
	// API listens, on the namespace's loopback.
	BootBase, APIAddr string
	// Log is its log file.
	Log string
	// TFTP tells whether matchbox itself serves TFTP (else dnsmasq does).
	TFTP bool

	proc   *process
	client *http.Client
}

// startMatchbox starts matchbox serve in lab's namespace with the data
// directory already written in dataDir, and waits until it answers.
func startMatchbox(t testing.TB, lab *lab, dataDir, assets string, opts serverOptions) *matchboxServer {
	t.Helper()
	bin, help := buildMatchbox(t)
	seg := lab.Seg
	s := &matchboxServer{
		DataDir:  dataDir,
		Assets:   assets,
		BootBase: seg.BootBase(),
		APIAddr:  apiAddr,
		Log:      filepath.Join(lab.Dir, "matchbox.log"),
		TFTP:     hasTFTP(help),
	}
	args := []string{"serve", "--data-dir", dataDir}
	if opts.Store != "" {
		args = append(args, "--store", opts.Store)
	} else {
		s.DB = filepath.Join(lab.Dir, "matchbox.db")
		args = append(args, "--db", s.DB)
	}
	args = append(args, "--assets-dir", assets,
		"--http-addr", seg.ServerIP+":"+httpPort, "--api-addr", s.APIAddr,
		"--log-level", "debug",
		"--dhcp-mode", opts.DHCPMode, "--dhcp-iface", seg.Bridge,
		"--boot-url", s.BootBase,
	)
	if opts.DHCPMode == "authoritative" {
		args = append(args, "--dhcp-range", seg.DHCPRange(), "--dhcp-subnet", seg.Subnet)
	}
	tftpIP := seg.ServerIP
	if opts.ServerIP != "" {
		lab.NS.ip(t, "addr", "add", opts.ServerIP+"/24", "dev", seg.Bridge)
		args = append(args, "--dhcp-server-ip", opts.ServerIP)
		tftpIP = opts.ServerIP
	}
	if s.TFTP {
		args = append(args, "--tftp-addr", tftpIP+":69", "--tftp-root", filepath.Join(assets, "tftp"))
	}
	args = append(args, opts.ExtraArgs...)
	cmd := lab.NS.Command(bin, args...)
	s.proc = startProcess(t, "matchbox", cmd, s.Log, 5*time.Second)
	s.client = &http.Client{Transport: &http.Transport{DialContext: lab.NS.Dial, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	lab.keep("matchbox.log")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.proc.Exited() {
			t.Fatalf("matchbox serve exited during start-up (%v): see %s:\n%s", s.proc.err, s.Log, tail(s.Log, 30))
		}
		resp, err := s.client.Get(s.BootBase + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("matchbox did not answer /healthz within 30s (%v): see %s", err, s.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("matchbox serve: DHCP %s, TFTP by %s, HTTP %s, API %s (in namespace %s)",
		opts.DHCPMode, map[bool]string{true: "matchbox", false: "dnsmasq (matchbox has no --tftp-addr yet)"}[s.TFTP],
		s.BootBase, s.APIAddr, lab.NS.Name)
	return s
}

// event is one entry of a machine's timeline, as the API returns it.
type event struct {
	ID     int64          `json:"id"`
	At     time.Time      `json:"at"`
	Type   string         `json:"type"`
	Detail map[string]any `json:"detail"`
}

// machineRecord is a machine as the API returns it.
type machineRecord struct {
	ID    string   `json:"id"`
	MACs  []string `json:"macs"`
	State string   `json:"state"`
	Group string   `json:"group"`
}

// getJSON GETs an API path and decodes the answer into v.
func (s *matchboxServer) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.APIAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// Machine returns the machine record holding mac.
func (s *matchboxServer) Machine(ctx context.Context, mac string) (machineRecord, error) {
	n := 0
	after := ""
	for {
		var list struct {
			Items []struct {
				Machine *machineRecord `json:"machine"`
			} `json:"items"`
			Next string `json:"next"`
		}
		path := "/api/v1/machines"
		if after != "" {
			path += "?after=" + url.QueryEscape(after)
		}
		if err := s.getJSON(ctx, path, &list); err != nil {
			return machineRecord{}, err
		}
		for _, it := range list.Items {
			if it.Machine == nil {
				continue
			}
			n++
			for _, x := range it.Machine.MACs {
				if strings.EqualFold(x, mac) {
					return *it.Machine, nil
				}
			}
		}
		if list.Next == "" || list.Next == after {
			return machineRecord{}, fmt.Errorf("no machine with MAC %s among %d machines", mac, n)
		}
		after = list.Next
	}
}

// Events returns the timeline of the machine holding mac.
func (s *matchboxServer) Events(ctx context.Context, mac string) ([]event, error) {
	m, err := s.Machine(ctx, mac)
	if err != nil {
		return nil, err
	}
	var all []event
	after := int64(0)
	for {
		var page struct {
			Events []event `json:"events"`
			Next   int64   `json:"next"`
		}
		path := "/api/v1/machines/" + url.PathEscape(m.ID) + "/events"
		if after > 0 {
			path += fmt.Sprintf("?after=%d", after)
		}
		if err := s.getJSON(ctx, path, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Events...)
		if page.Next == 0 || page.Next == after {
			return all, nil
		}
		after = page.Next
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// containsFlag reports whether help lists flag.
func containsFlag(help, flag string) bool { return strings.Contains(help, flag+" ") }
