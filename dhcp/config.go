// Package dhcp is matchbox's DHCPv4 server for network boot: an
// authoritative server (address ranges, reservations, leases persisted
// before they are acknowledged) or a proxyDHCP server beside an existing
// one, both handing PXE firmware, iPXE and UEFI HTTP boot clients the boot
// file or URL that suits them. Replies are built by a chain of small
// handlers, one per concern. The Allocator hands out addresses from memory
// and keeps leases through a LeaseStorage (the store package's SQLite);
// Reservations applies the reservation rule to the machine records.
package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"

	"matchbox/matchbox"
)

// Modes of the server.
const (
	ModeOff           = "off"
	ModeProxy         = "proxy"
	ModeAuthoritative = "authoritative"
)

// Range is a range of addresses handed out dynamically, on one subnet.
type Range struct {
	// Start and End are the first and last address (inclusive).
	Start, End netip.Addr
	// Subnet is the range's subnet (default: Config.Subnet). Relayed
	// requests get an address from the ranges of the subnet their relay
	// address (giaddr) is in.
	Subnet netip.Prefix
	// Router is the default gateway of the subnet (default: Config.Router
	// when it is in Subnet).
	Router netip.Addr
}

// Machine is what the server needs to know of a machine.
type Machine struct {
	// ID is the machine's id.
	ID string
	// State is its lifecycle state; provisioned machines get no boot file.
	State matchbox.MachineState
	// PXEDisabled withholds the boot file.
	PXEDisabled bool
	// IP is the machine's reserved address (from its record, or from the
	// metadata of the group that selects its MAC), if any.
	IP netip.Addr
}

// MachineLookup finds machines by MAC (normalised) or UUID.
type MachineLookup interface {
	LookupMachine(ctx context.Context, mac, uuid string) (Machine, bool)
}

// EventSink records boot events on machines' timelines without blocking.
type EventSink interface {
	Record(ev matchbox.BootEvent) bool
}

// Leases allocates and keeps leases (*Allocator implements it).
type Leases interface {
	Offer(req OfferRequest) (netip.Addr, error)
	Bind(ctx context.Context, req BindRequest) (Lease, error)
	Release(ctx context.Context, mac string, ip netip.Addr) error
	Decline(ctx context.Context, mac string, ip netip.Addr) error
	Withdraw(mac string, xid [4]byte) bool
	Lookup(mac string) (Lease, bool)
}

// Config configures a Server.
type Config struct {
	// Mode is off, proxy or authoritative.
	Mode string
	// Interface is the network interface the server binds to.
	Interface string
	// Ranges are the dynamic ranges (authoritative mode).
	Ranges []Range
	// Subnet is the subnet of Interface (default: the interface's first
	// IPv4 address and its prefix).
	Subnet netip.Prefix
	// Router is the default gateway handed to clients of Subnet.
	Router netip.Addr
	// DNS are the name servers handed to clients.
	DNS []netip.Addr
	// Domain is the domain name handed to clients.
	Domain string
	// LeaseTime is the lease duration, at least MinLeaseTime.
	LeaseTime time.Duration
	// BootURL is matchbox's HTTP base URL, http://ADDR:PORT (required to
	// chain iPXE to boot.ipxe and for UEFI HTTP boot).
	BootURL string
	// ServerIP is the server's address on Interface: server identifier and
	// TFTP server (default: derived from Interface).
	ServerIP netip.Addr
	// BootFiles maps a client architecture (option 93) to the boot binary
	// fetched over TFTP; it is merged over DefaultBootFiles.
	BootFiles map[iana.Arch]string
	// HTTPBootPath is the path under BootURL where UEFI HTTP boot clients
	// find the boot binaries (default /assets/tftp/).
	HTTPBootPath string
	// ChainIPXE hands iPXE clients (a NIC's iPXE ROM) matchbox's own iPXE
	// binary once, before boot.ipxe; the server remembers per MAC, for
	// ServedTTL, that the binary was served, as the ROM and the binary it
	// loads send identical requests.
	ChainIPXE bool
	// ServedTTL is how long the server remembers that a MAC was handed a
	// boot binary (default 2m).
	ServedTTL time.Duration
	// Leases allocates addresses (authoritative mode): an *Allocator.
	Leases Leases
	// StoreHealth tells why the lease storage cannot take writes, as a
	// short reason ("storage_full"), or "" when it can (may be nil: always
	// can). While it cannot, a DISCOVER gets no OFFER (the address could
	// not be stored when the client asks for it), except from a client
	// holding a committed lease, offered its address for the time left.
	// A REQUEST is acknowledged only once its lease is stored, but for
	// the renewal of a committed lease, acknowledged for the time left
	// on it and never extended (no other server could know of an
	// extension); any other REQUEST whose commit fails gets silence (no
	// NAK). The silences are counted in matchbox_dhcp_dropped_total under
	// that reason.
	StoreHealth func() string
	// Machines looks machines up (may be nil).
	Machines MachineLookup
	// Events receives boot events (may be nil).
	Events EventSink
	// Logger receives logs (default: discarded).
	Logger *slog.Logger
	// Metrics receives counters (default: unregistered).
	Metrics *Metrics
	// Workers bounds the requests handled at once (default 1024); requests
	// beyond it are dropped and counted.
	Workers int
}

// DefaultBootFiles are the boot binaries per client architecture.
//
// x86-64 UEFI firmware gets snponly.efi, the iPXE that drives the NIC
// through the firmware's own network driver (SNP): it is a fifth of
// ipxe.efi's size and reaches its first DHCP request seconds sooner under
// OVMF, as ipxe.efi first disconnects the firmware's driver and probes the
// NIC with its own (docs/network-setup.md has the measurement).
// Config.BootFiles (--dhcp-boot-file efi-x86-64=ipxe.efi) chooses ipxe.efi
// for firmware whose network driver does not serve.
func DefaultBootFiles() map[iana.Arch]string {
	return map[iana.Arch]string{
		0:  "undionly.kpxe",     // x86 BIOS
		6:  "ipxe.efi",          // x86 UEFI (IA32 firmware on x86-64 machines)
		7:  "snponly.efi",       // x86-64 UEFI
		9:  "snponly.efi",       // x86-64 UEFI (EFI BC)
		11: "arm64/snponly.efi", // arm64 UEFI (os-assets/get-ipxe puts it there)
		15: "ipxe.efi",          // x86 UEFI HTTP
		16: "snponly.efi",       // x86-64 UEFI HTTP
		19: "arm64/snponly.efi", // arm64 UEFI HTTP
	}
}

// ParseArch parses an architecture number (0, 7, 0x0b) or one of the names
// bios, efi-x86-64 (ipxe-efi), efi-arm64.
func ParseArch(s string) (iana.Arch, error) {
	switch strings.ToLower(s) {
	case "bios", "x86", "pcbios":
		return 0, nil
	case "efi-ia32":
		return 6, nil
	case "efi-x86-64", "efi-x86_64", "efi", "uefi":
		return 7, nil
	case "efi-bc":
		return 9, nil
	case "efi-arm64", "arm64":
		return 11, nil
	}
	var n uint16
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("architecture %q: want a number (RFC 4578: 0 BIOS, 7 x86-64 UEFI, 11 arm64 UEFI) or bios, efi-x86-64, efi-arm64", s)
	}
	return iana.Arch(n), nil
}

// ParseRange parses START-END, optionally followed by ,SUBNET[,ROUTER]
// (10.0.1.100-10.0.1.200,10.0.1.0/24,10.0.1.1). Config.Validate checks the
// range.
func ParseRange(s string) (Range, error) {
	parts := strings.Split(s, ",")
	se := strings.SplitN(parts[0], "-", 2)
	if len(se) != 2 || len(parts) > 3 {
		return Range{}, fmt.Errorf("range %q: want START-END[,SUBNET[,ROUTER]]", s)
	}
	var r Range
	var err error
	if r.Start, err = netip.ParseAddr(strings.TrimSpace(se[0])); err != nil || !r.Start.Is4() {
		return Range{}, fmt.Errorf("range %q: start %q is not an IPv4 address", s, se[0])
	}
	if r.End, err = netip.ParseAddr(strings.TrimSpace(se[1])); err != nil || !r.End.Is4() {
		return Range{}, fmt.Errorf("range %q: end %q is not an IPv4 address", s, se[1])
	}
	if len(parts) > 1 {
		if r.Subnet, err = netip.ParsePrefix(strings.TrimSpace(parts[1])); err != nil || !r.Subnet.Addr().Is4() {
			return Range{}, fmt.Errorf("range %q: subnet %q is not an IPv4 prefix", s, parts[1])
		}
		r.Subnet = r.Subnet.Masked()
	}
	if len(parts) > 2 {
		if r.Router, err = netip.ParseAddr(strings.TrimSpace(parts[2])); err != nil || !r.Router.Is4() {
			return Range{}, fmt.Errorf("range %q: router %q is not an IPv4 address", s, parts[2])
		}
	}
	return r, nil
}

// MinLeaseTime is the shortest lease the server hands out.
const MinLeaseTime = time.Minute

// FieldError is a bad value of a Config field. Field names it as in Config
// (LeaseTime, Ranges[1], DNS[0]), so that a caller can name its own source
// of the value (cmd/matchbox names the flag).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "dhcp: " + e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks a configuration, naming the first bad field in a
// *FieldError: a mode of proxy or authoritative, an interface (or, for a
// server that only handles packets, a server address), IPv4 ranges (start
// <= end, at least one in authoritative mode), IPv4 subnet, router, server
// address and name servers, a lease of at least MinLeaseTime, an http(s)
// boot URL and named boot files. It is the one check
// of a DHCP configuration: New runs it. Values that depend on the
// interface (the subnet ranges must fall in) are checked by Listen.
func (cfg *Config) Validate() error {
	switch cfg.Mode {
	case ModeProxy, ModeAuthoritative:
	case ModeOff, "":
		return fieldErr("Mode", "mode is off")
	default:
		return fieldErr("Mode", "mode %q: want off, proxy or authoritative", cfg.Mode)
	}
	if cfg.Interface == "" && !cfg.ServerIP.IsValid() {
		return fieldErr("Interface", "required with mode %s", cfg.Mode)
	}
	for i, r := range cfg.Ranges {
		field := fmt.Sprintf("Ranges[%d]", i)
		if !r.Start.Is4() || !r.End.Is4() {
			return fieldErr(field, "range %s-%s: want IPv4 addresses", r.Start, r.End)
		}
		if r.End.Less(r.Start) {
			return fieldErr(field, "range %s-%s: end before start", r.Start, r.End)
		}
		if r.Subnet.IsValid() && !r.Subnet.Addr().Is4() {
			return fieldErr(field, "range %s-%s: subnet %s is not an IPv4 prefix", r.Start, r.End, r.Subnet)
		}
		if r.Router.IsValid() && !r.Router.Is4() {
			return fieldErr(field, "range %s-%s: router %s is not an IPv4 address", r.Start, r.End, r.Router)
		}
	}
	if cfg.Mode == ModeProxy && cfg.BootURL == "" {
		// Proxy DHCP gives only boot information: without the URL, iPXE
		// clients get none and loop back to DHCP.
		return fieldErr("BootURL", "required with mode proxy: iPXE clients would get no boot script and loop; give matchbox's URL as machines reach it, http://ADDR:PORT")
	}
	if cfg.Mode == ModeAuthoritative && len(cfg.Ranges) == 0 {
		return fieldErr("Ranges", "at least one range is required with mode authoritative")
	}
	if cfg.Subnet.IsValid() && !cfg.Subnet.Addr().Is4() {
		return fieldErr("Subnet", "%s: want an IPv4 prefix such as 10.0.0.0/24", cfg.Subnet)
	}
	if cfg.Router.IsValid() && !cfg.Router.Is4() {
		return fieldErr("Router", "%s: want an IPv4 address", cfg.Router)
	}
	if cfg.ServerIP.IsValid() && !cfg.ServerIP.Is4() {
		return fieldErr("ServerIP", "%s: want an IPv4 address", cfg.ServerIP)
	}
	for i, a := range cfg.DNS {
		if !a.Is4() {
			return fieldErr(fmt.Sprintf("DNS[%d]", i), "%s: want an IPv4 address", a)
		}
	}
	if cfg.LeaseTime < MinLeaseTime {
		return fieldErr("LeaseTime", "%s: want at least %s", cfg.LeaseTime, MinLeaseTime)
	}
	if cfg.BootURL != "" && !strings.HasPrefix(cfg.BootURL, "http://") && !strings.HasPrefix(cfg.BootURL, "https://") {
		return fieldErr("BootURL", "%q: want http://ADDR:PORT", cfg.BootURL)
	}
	for a, f := range cfg.BootFiles {
		if f == "" {
			return fieldErr("BootFiles", "architecture %d: no file name", a)
		}
	}
	return nil
}

// setDefaults fills the defaults that need no interface.
func (cfg *Config) setDefaults() {
	if cfg.ServedTTL <= 0 {
		cfg.ServedTTL = 2 * time.Minute
	}
	if cfg.HTTPBootPath == "" {
		cfg.HTTPBootPath = "/assets/tftp/"
	}
	if !strings.HasSuffix(cfg.HTTPBootPath, "/") {
		cfg.HTTPBootPath += "/"
	}
	cfg.BootURL = strings.TrimSuffix(cfg.BootURL, "/")
	files := DefaultBootFiles()
	for a, f := range cfg.BootFiles {
		files[a] = f
	}
	cfg.BootFiles = files
	if cfg.Workers <= 0 {
		cfg.Workers = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewUnregisteredMetrics()
	}
}

// finish fills the defaults derived from the interface: the subnet, the
// server address and each range's subnet and router.
func (cfg *Config) finish(ifaceAddr netip.Prefix) error {
	if !cfg.Subnet.IsValid() && ifaceAddr.IsValid() {
		cfg.Subnet = ifaceAddr.Masked()
	}
	if !cfg.ServerIP.IsValid() {
		if !ifaceAddr.IsValid() {
			return fmt.Errorf("dhcp: interface %s has no IPv4 address and no server address is set", cfg.Interface)
		}
		cfg.ServerIP = ifaceAddr.Addr()
	}
	for i := range cfg.Ranges {
		r := &cfg.Ranges[i]
		if !r.Subnet.IsValid() {
			r.Subnet = cfg.Subnet
		}
		if !r.Subnet.IsValid() || !r.Subnet.Contains(r.Start) || !r.Subnet.Contains(r.End) {
			return fmt.Errorf("dhcp: range %s-%s is not inside subnet %s", r.Start, r.End, r.Subnet)
		}
		if !r.Router.IsValid() && cfg.Router.IsValid() && r.Subnet.Contains(cfg.Router) {
			r.Router = cfg.Router
		}
	}
	return nil
}

// LeaseRanges returns the address ranges of rs, for AllocatorConfig.
func LeaseRanges(rs []Range) []LeaseRange {
	out := make([]LeaseRange, len(rs))
	for i, r := range rs {
		out[i] = LeaseRange{Start: r.Start, End: r.End}
	}
	return out
}
