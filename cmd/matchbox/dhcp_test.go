package main

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"matchbox/internal/netnstest"
	"matchbox/store"
)

func TestDHCPFlagErrors(t *testing.T) {
	base := func() *dhcpOptions {
		return &dhcpOptions{mode: "authoritative", iface: "eth9", ranges: []string{"10.0.0.100-10.0.0.200"}, leaseTime: time.Hour}
	}
	cases := []struct {
		name string
		edit func(d *dhcpOptions)
		want string // substring of the error; "" for none
	}{
		{"valid", func(d *dhcpOptions) {}, ""},
		{"bad mode", func(d *dhcpOptions) { d.mode = "on" }, "--dhcp-mode"},
		{"no iface", func(d *dhcpOptions) { d.iface = "" }, "--dhcp-iface"},
		{"bad range", func(d *dhcpOptions) { d.ranges = []string{"10.0.0.200-10.0.0.100"} }, "--dhcp-range"},
		{"range not ipv4", func(d *dhcpOptions) { d.ranges = []string{"a-b"} }, "--dhcp-range"},
		{"no range", func(d *dhcpOptions) { d.ranges = nil }, "--dhcp-range"},
		{"proxy without range", func(d *dhcpOptions) { d.mode, d.ranges, d.bootURL = "proxy", nil, "http://10.0.0.1:8080" }, ""},
		{"proxy without boot url", func(d *dhcpOptions) { d.mode, d.ranges = "proxy", nil }, "--boot-url: required with mode proxy"},
		{"bad subnet", func(d *dhcpOptions) { d.subnet = "10.0.0.0" }, "--dhcp-subnet"},
		{"bad router", func(d *dhcpOptions) { d.router = "x" }, "--dhcp-router"},
		{"bad dns", func(d *dhcpOptions) { d.dns = []string{"10.0.0.1", "::1"} }, "--dhcp-dns"},
		{"short lease", func(d *dhcpOptions) { d.leaseTime = time.Second }, "--dhcp-lease-time"},
		{"no lease time", func(d *dhcpOptions) { d.leaseTime = 0 }, "--dhcp-lease-time"},
		{"bad boot url", func(d *dhcpOptions) { d.bootURL = "10.0.0.1:8080" }, "--boot-url"},
		{"bad boot file", func(d *dhcpOptions) { d.bootFiles = []string{"ipxe.efi"} }, "--dhcp-boot-file"},
		{"bad arch", func(d *dhcpOptions) { d.bootFiles = []string{"sparc=x"} }, "--dhcp-boot-file"},
		{"boot files", func(d *dhcpOptions) { d.bootFiles = []string{"bios=undionly.kpxe", "0x0b=a.efi", "7=x.efi"} }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			tc.edit(d)
			cfg, err := d.config()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			if tc.name == "boot files" && (cfg.BootFiles[0] != "undionly.kpxe" || cfg.BootFiles[7] != "x.efi") {
				t.Fatalf("boot files %v", cfg.BootFiles)
			}
		})
	}
}

// TestDHCPServeBinary runs the real `matchbox serve --dhcp-mode
// authoritative` in a network namespace and has udhcpc get an address and
// iPXE's boot URL over a veth pair.
func TestDHCPServeBinary(t *testing.T) {
	netnstest.Require(t, "busybox")
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	pair := netnstest.NewPair(t, "mdhcp", "10.9.0.1/24")
	srv, cli := pair.Server, pair.Client

	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", srv, bin, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0",
		"--dhcp-mode", "authoritative", "--dhcp-iface", "vS", "--dhcp-range", "10.9.0.100-10.9.0.110",
		"--boot-url", "http://10.9.0.1:8080", "--dhcp-router", "10.9.0.1")
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})

	// The server may still be starting: udhcpc retries for a while.
	vars, err := netnstest.Udhcpc(t, cli, netnstest.ClientIface, "-t", "15", "-T", "1", "-x", "0x4d:69505845", "-x", "0x5d:0000")
	if err != nil {
		t.Fatalf("%v\nserver logs:\n%s", err, logs.String())
	}
	got, err := netip.ParseAddr(vars["ip"])
	inRange := err == nil && got.Compare(netip.MustParseAddr("10.9.0.100")) >= 0 && got.Compare(netip.MustParseAddr("10.9.0.110")) <= 0
	if !inRange || vars["boot_file"] != "http://10.9.0.1:8080/boot.ipxe" {
		t.Fatalf("udhcpc got ip %q (want one of --dhcp-range 10.9.0.100-10.9.0.110) boot_file %q", vars["ip"], vars["boot_file"])
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(dir, "matchbox.db")})
	if err != nil {
		t.Fatalf("open the server's store: %v", err)
	}
	defer st.Close()
	leases, err := st.LoadLeases(context.Background())
	if err != nil {
		t.Fatalf("read stored leases: %v", err)
	}
	if len(leases) != 1 || leases[0].IP != got || leases[0].State != "bound" {
		t.Fatalf("stored leases %+v, want one bound lease on %s", leases, got)
	}
}
