package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"
	"github.com/spf13/pflag"

	"matchbox/dhcp"
	"matchbox/store"
)

// dhcpOptions are the flags of matchbox's DHCP server (authoritative or
// proxy), run when --dhcp-mode is not off.
type dhcpOptions struct {
	mode      string
	iface     string
	ranges    []string
	subnet    string
	router    string
	dns       []string
	domain    string
	leaseTime time.Duration
	bootURL   string
	bootFiles []string
	serverIP  string
	chainIPXE bool
}

func (d *dhcpOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&d.mode, "dhcp-mode", dhcp.ModeOff, "DHCP server: off, proxy (boot information beside another DHCP server) or authoritative (addresses and boot information)")
	f.StringVar(&d.iface, "dhcp-iface", "", "network interface the DHCP server binds to (required unless --dhcp-mode=off)")
	f.StringArrayVar(&d.ranges, "dhcp-range", nil, "dynamic address range START-END[,SUBNET[,ROUTER]] (repeatable; authoritative mode)")
	f.StringVar(&d.subnet, "dhcp-subnet", "", "subnet of --dhcp-iface, as 10.0.0.0/24 (default: from the interface's address)")
	f.StringVar(&d.router, "dhcp-router", "", "default gateway handed to clients")
	f.StringSliceVar(&d.dns, "dhcp-dns", nil, "name servers handed to clients (comma-separated or repeated)")
	f.StringVar(&d.domain, "dhcp-domain", "", "domain name handed to clients")
	f.DurationVar(&d.leaseTime, "dhcp-lease-time", time.Hour, "lease duration")
	f.StringVar(&d.bootURL, "boot-url", "", "matchbox's HTTP base URL as machines reach it, http://ADDR:PORT (iPXE gets {boot-url}/boot.ipxe)")
	f.StringArrayVar(&d.bootFiles, "dhcp-boot-file", nil, "boot binary per client architecture ARCH=NAME, ARCH a number (option 93) or bios, efi-x86-64, efi-arm64 (repeatable)")
	f.StringVar(&d.serverIP, "dhcp-server-ip", "", "server address on --dhcp-iface: server identifier and TFTP server (default: the interface's first IPv4 address)")
	f.BoolVar(&d.chainIPXE, "dhcp-chain-ipxe", false, "hand iPXE ROMs matchbox's own iPXE binary once before boot.ipxe")
}

// config turns the flags into a dhcp.Config (without stores) and has dhcp
// validate it, naming the flag of any bad value: this parses, dhcp checks.
func (d *dhcpOptions) config() (dhcp.Config, error) {
	cfg := dhcp.Config{Mode: d.mode, Interface: d.iface, Domain: d.domain, LeaseTime: d.leaseTime, BootURL: d.bootURL, ChainIPXE: d.chainIPXE}
	for _, s := range d.ranges {
		r, err := dhcp.ParseRange(s)
		if err != nil {
			return cfg, fmt.Errorf("--dhcp-range: %w", err)
		}
		cfg.Ranges = append(cfg.Ranges, r)
	}
	if d.subnet != "" {
		p, err := netip.ParsePrefix(d.subnet)
		if err != nil {
			return cfg, fmt.Errorf("--dhcp-subnet %q: want an IPv4 prefix such as 10.0.0.0/24", d.subnet)
		}
		cfg.Subnet = p.Masked()
	}
	var err error
	if cfg.Router, err = parseAddrFlag("--dhcp-router", d.router); err != nil {
		return cfg, err
	}
	if cfg.ServerIP, err = parseAddrFlag("--dhcp-server-ip", d.serverIP); err != nil {
		return cfg, err
	}
	for _, s := range d.dns {
		a, err := parseAddrFlag("--dhcp-dns", strings.TrimSpace(s))
		if err != nil {
			return cfg, err
		}
		if a.IsValid() {
			cfg.DNS = append(cfg.DNS, a)
		}
	}
	if len(d.bootFiles) > 0 {
		cfg.BootFiles = map[iana.Arch]string{}
	}
	for _, s := range d.bootFiles {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return cfg, fmt.Errorf("--dhcp-boot-file %q: want ARCH=NAME", s)
		}
		arch, err := dhcp.ParseArch(k)
		if err != nil {
			return cfg, fmt.Errorf("--dhcp-boot-file %q: %w", s, err)
		}
		cfg.BootFiles[arch] = v
	}
	return cfg, dhcpFlagError(cfg.Validate())
}

// dhcpFlagError names the flag behind a bad dhcp.Config field.
func dhcpFlagError(err error) error {
	var fe *dhcp.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field, _, _ := strings.Cut(fe.Field, "[")
	flag := map[string]string{
		"Mode": "--dhcp-mode", "Interface": "--dhcp-iface", "Ranges": "--dhcp-range", "Subnet": "--dhcp-subnet",
		"Router": "--dhcp-router", "ServerIP": "--dhcp-server-ip", "DNS": "--dhcp-dns", "LeaseTime": "--dhcp-lease-time",
		"BootURL": "--boot-url", "BootFiles": "--dhcp-boot-file",
	}[field]
	if flag == "" {
		return err
	}
	return fmt.Errorf("%s: %w", flag, fe.Err)
}

// parseAddrFlag parses an address flag (empty: none).
func parseAddrFlag(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q: want an IPv4 address", flag, s)
	}
	return a, nil
}

// startDHCP builds the DHCP server from its flags, binds it and adds it to
// the tasks of s; with --dhcp-mode=off it does nothing.
func (s *services) startDHCP(ctx context.Context, d *dhcpOptions) error {
	if d.mode == dhcp.ModeOff {
		return nil
	}
	cfg, err := d.config()
	if err != nil {
		return err
	}
	cfg.Machines = dhcp.Reservations{Records: dhcpRecords(s.store), Catalog: s.store.Snapshot}
	cfg.Events = s.recorder
	cfg.Logger = s.log.With("component", "dhcp")
	if cfg.Metrics, err = dhcp.NewMetrics(s.registry); err != nil {
		return err
	}
	if h := s.health; h != nil {
		cfg.StoreHealth = func() string { return h.State().Reason }
		for _, r := range store.Reasons {
			cfg.Metrics.Dropped(r)
		}
	}
	var leases *dhcp.Allocator
	if d.mode == dhcp.ModeAuthoritative {
		if leases, err = dhcp.OpenAllocator(ctx, dhcp.AllocatorConfig{Ranges: dhcp.LeaseRanges(cfg.Ranges), Storage: s.store, Logger: cfg.Logger, Metrics: cfg.Metrics, MaxBatch: s.leaseBatch}); err != nil {
			return fmt.Errorf("--dhcp-range: %w", err)
		}
		cfg.Leases = leases
	}
	closeLeases := func() {
		if leases != nil {
			leases.Close()
		}
	}
	srv, err := dhcp.New(cfg)
	if err != nil {
		closeLeases()
		return dhcpFlagError(err)
	}
	if err := srv.Listen(); err != nil {
		closeLeases()
		return dhcpFlagError(err)
	}
	s.clientMAC = srv.ClientMAC
	s.tasks = append(s.tasks, func(ctx context.Context) error {
		defer closeLeases()
		return srv.Serve(ctx)
	})
	return nil
}

// dhcpRecords reads the DHCP server's machine records from the store's
// in-memory index.
func dhcpRecords(st backend) func(mac, uuid string) (dhcp.MachineRecord, bool) {
	return func(mac, uuid string) (dhcp.MachineRecord, bool) {
		sum, ok := st.LookupMachine(mac, uuid)
		if !ok {
			return dhcp.MachineRecord{}, false
		}
		return dhcp.MachineRecord{
			Machine:    dhcp.Machine{ID: sum.ID, State: sum.State, PXEDisabled: sum.PXEDisabled},
			ReservedIP: sum.IP, Inventory: sum.Inventory,
		}, true
	}
}
