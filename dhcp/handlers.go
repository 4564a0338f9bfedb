package dhcp

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"matchbox/matchbox"
)

// Handler adds its part to a reply. It returns the reply to continue with
// (nil drops the request) and whether the chain stops there.
type Handler func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool)

// runChain runs handlers in order on a reply built from req.
func runChain(req, resp *dhcpv4.DHCPv4, chain ...Handler) *dhcpv4.DHCPv4 {
	for _, h := range chain {
		var stop bool
		resp, stop = h(req, resp)
		if resp == nil || stop {
			return resp
		}
	}
	return resp
}

// client is what a request tells of the client.
type client struct {
	mac        string
	arch       iana.Arch
	hasArch    bool
	ipxe       bool   // user class iPXE
	pxe        bool   // class identifier PXEClient...
	httpClient bool   // class identifier HTTPClient...
	uuid       string // option 97, lower-case 8-4-4-4-12
	guid       []byte // option 97 as received, echoed to PXE clients
}

// netboot reports whether the client asks to boot from the network.
func (c *client) netboot() bool { return c.hasArch || c.ipxe || c.pxe || c.httpClient }

// classify reads the boot-related options of a request.
func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr.String()}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.arch, c.hasArch = archs[0], true
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.ipxe = true
		}
	}
	class := req.ClassIdentifier()
	c.pxe = strings.HasPrefix(class, "PXEClient")
	c.httpClient = strings.HasPrefix(class, "HTTPClient")
	if g := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); len(g) == 17 && g[0] == 0 {
		c.guid = g
		var b [36]byte
		hex.Encode(b[0:8], g[1:5])
		b[8] = '-'
		hex.Encode(b[9:13], g[5:7])
		b[13] = '-'
		hex.Encode(b[14:18], g[7:9])
		b[18] = '-'
		hex.Encode(b[19:23], g[9:11])
		b[23] = '-'
		hex.Encode(b[24:36], g[11:17])
		c.uuid = string(b[:])
	}
	return c
}

// exchange is the state of one request while its reply is built.
type exchange struct {
	ctx     context.Context
	s       *Server
	c       client
	machine Machine
	known   bool
	subnet  netip.Prefix
	router  netip.Addr
	port    int // the server port the request came to: 67 or 4011

	ip      netip.Addr // address offered or acknowledged
	boot    string     // boot file or URL given
	nakWhy  string
	dropWhy string
	// dropReason is the metric reason of a drop, when not dropIgnored.
	dropReason string
}

// storeDegraded returns why the lease storage cannot take writes, or "".
func (x *exchange) storeDegraded() string {
	if x.s.cfg.StoreHealth == nil {
		return ""
	}
	return x.s.cfg.StoreHealth()
}

// pxeAllowed reports whether the machine may be handed a boot file.
func (x *exchange) pxeAllowed() bool {
	if !x.known {
		return true
	}
	return !x.machine.PXEDisabled && x.machine.State != matchbox.StateProvisioned
}

// reserved returns the machine's reserved address when it is on the
// request's subnet.
func (x *exchange) reserved() netip.Addr {
	if x.known && x.machine.IP.Is4() && x.subnet.Contains(x.machine.IP) {
		return x.machine.IP
	}
	return netip.Addr{}
}

func ip4(a netip.Addr) net.IP {
	b := a.As4()
	return net.IPv4(b[0], b[1], b[2], b[3]).To4()
}

func addrOf(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil && !ip4.Equal(net.IPv4zero) {
		return netip.AddrFrom4([4]byte(ip4))
	}
	return netip.Addr{}
}

// replyOptions are the encoded values of the options every reply of the
// server carries the same, made once when its configuration is complete
// (New or Listen) instead of for every reply. Values are shared between
// replies and never modified.
type replyOptions struct {
	serverID                 []byte
	leaseTime, renew, rebind []byte
	offer, ack               []byte // message types
	dns                      []byte // nil: none configured
	domain                   []byte // nil: none configured
}

func newReplyOptions(cfg *Config) replyOptions {
	o := replyOptions{
		serverID:  dhcpv4.OptServerIdentifier(ip4(cfg.ServerIP)).Value.ToBytes(),
		leaseTime: dhcpv4.OptIPAddressLeaseTime(cfg.LeaseTime).Value.ToBytes(),
		renew:     dhcpv4.OptRenewTimeValue(cfg.LeaseTime / 2).Value.ToBytes(),
		rebind:    dhcpv4.OptRebindingTimeValue(cfg.LeaseTime * 7 / 8).Value.ToBytes(),
		offer:     dhcpv4.MessageTypeOffer.ToBytes(),
		ack:       dhcpv4.MessageTypeAck.ToBytes(),
	}
	if len(cfg.DNS) > 0 {
		ips := make([]net.IP, len(cfg.DNS))
		for i, a := range cfg.DNS {
			ips[i] = ip4(a)
		}
		o.dns = dhcpv4.OptDNS(ips...).Value.ToBytes()
	}
	if cfg.Domain != "" {
		o.domain = dhcpv4.OptDomainName(cfg.Domain).Value.ToBytes()
	}
	return o
}

// setOption sets option code of resp to the encoded value v.
func setOption(resp *dhcpv4.DHCPv4, code dhcpv4.OptionCode, v []byte) {
	resp.Options[code.Code()] = v
}

// leaseHandler is the authoritative server's address handling: OFFER for a
// DISCOVER, ACK (after the lease is committed) or NAK for a REQUEST, ACK
// without an address for an INFORM.
func leaseHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		cfg, opts := &x.s.cfg, &x.s.opts
		setOption(resp, dhcpv4.OptionServerIdentifier, opts.serverID)
		leaseTime := func() {
			setOption(resp, dhcpv4.OptionIPAddressLeaseTime, opts.leaseTime)
			setOption(resp, dhcpv4.OptionRenewTimeValue, opts.renew)
			setOption(resp, dhcpv4.OptionRebindingTimeValue, opts.rebind)
		}
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			if r := x.storeDegraded(); r != "" {
				// A client holding a committed lease is offered its
				// address for the time left (its REQUEST is then
				// acknowledged for that time, ErrNotExtended); no other
				// address could be stored.
				if held, ok := cfg.Leases.Lookup(x.c.mac); ok && held.State == LeaseBound && x.subnet.Contains(held.IP) {
					if left := time.Until(held.Expires).Truncate(time.Second); left >= time.Second {
						x.ip = held.IP
						resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
						resp.YourIPAddr = ip4(held.IP)
						resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(left))
						return resp, false
					}
				}
				x.dropWhy, x.dropReason = "no new address is offered while the lease store cannot take writes: "+r, r
				return nil, true
			}
			ip, err := cfg.Leases.Offer(OfferRequest{
				MAC: x.c.mac, Subnet: x.subnet, Reserved: x.reserved(), Requested: addrOf(req.RequestedIPAddress()),
				XID: req.TransactionID,
			})
			if err != nil {
				x.dropWhy = err.Error()
				return nil, true
			}
			x.ip = ip
			setOption(resp, dhcpv4.OptionDHCPMessageType, opts.offer)
			resp.YourIPAddr = ip4(ip)
			leaseTime()
			return resp, false
		case dhcpv4.MessageTypeRequest:
			if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != cfg.ServerIP {
				x.dropWhy = "client chose server " + sid.String()
				if cfg.Leases.Withdraw(x.c.mac, req.TransactionID) {
					x.dropWhy += "; our offer withdrawn"
				}
				return nil, true
			}
			want := addrOf(req.RequestedIPAddress())
			if !want.IsValid() {
				want = addrOf(req.ClientIPAddr)
			}
			if !want.IsValid() {
				x.dropWhy = "request names no address"
				return nil, true
			}
			lease, err := cfg.Leases.Bind(x.ctx, BindRequest{
				MAC: x.c.mac, IP: want, Hostname: req.HostName(), TTL: cfg.LeaseTime,
				Subnet: x.subnet, Reserved: want == x.reserved(),
			})
			switch {
			case errors.Is(err, ErrNotExtended):
				// The storage failed: the committed lease runs to its
				// expiry, and the client is told that, not more.
				left := time.Until(lease.Expires).Truncate(time.Second)
				if left < time.Second {
					x.dropWhy = err.Error()
					return nil, true
				}
				cfg.Logger.Warn("dhcp: renewal not committed; acknowledged without extension", "mac", x.c.mac, "ip", lease.IP, "left", left, "err", err)
				x.ip = lease.IP
				resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
				resp.YourIPAddr = ip4(lease.IP)
				resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(left))
				resp.UpdateOption(dhcpv4.OptRenewTimeValue(left / 2))
				resp.UpdateOption(dhcpv4.OptRebindingTimeValue(left * 7 / 8))
				return resp, false
			case errors.Is(err, ErrAddressTaken), errors.Is(err, ErrNotInRange):
				x.ip, x.nakWhy = want, err.Error()
				return nak(resp, err.Error()), true
			case err != nil:
				// Not stored, not acknowledged; no NAK either.
				x.dropWhy, x.dropReason = err.Error(), x.storeDegraded()
				return nil, true
			}
			x.ip = lease.IP
			setOption(resp, dhcpv4.OptionDHCPMessageType, opts.ack)
			resp.YourIPAddr = ip4(lease.IP)
			leaseTime()
			return resp, false
		case dhcpv4.MessageTypeInform:
			resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
			resp.YourIPAddr = net.IPv4zero
			return resp, false
		}
		x.dropWhy = "message type " + req.MessageType().String()
		return nil, true
	}
}

// nak turns resp into a DHCPNAK.
func nak(resp *dhcpv4.DHCPv4, why string) *dhcpv4.DHCPv4 {
	sid := resp.Options.Get(dhcpv4.OptionServerIdentifier)
	resp.Options = dhcpv4.Options{}
	resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))
	if sid != nil {
		resp.Options[uint8(dhcpv4.OptionServerIdentifier)] = sid
	}
	resp.UpdateOption(dhcpv4.OptMessage(why))
	resp.YourIPAddr = net.IPv4zero
	resp.ClientIPAddr = net.IPv4zero
	resp.ServerIPAddr = net.IPv4zero
	resp.BootFileName, resp.ServerHostName = "", ""
	if !resp.GatewayIPAddr.IsUnspecified() && resp.GatewayIPAddr != nil {
		resp.SetBroadcast()
	}
	return resp
}

// proxyHandler is the proxyDHCP server's part: an OFFER without an address
// to a PXE DISCOVER on port 67, an ACK to a REQUEST on port 4011; nothing
// for other requests or clients that do not netboot.
func proxyHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		if !x.c.pxe && !x.c.httpClient {
			x.dropWhy = "not a PXE or HTTP boot client"
			return nil, true
		}
		if !x.pxeAllowed() {
			x.dropWhy = "network boot disabled for machine " + x.machine.ID
			return nil, true
		}
		mt := req.MessageType()
		switch {
		case x.port == ServerPort && mt == dhcpv4.MessageTypeDiscover:
			resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
		case x.port == ProxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
			resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
		default:
			x.dropWhy = "proxy ignores " + mt.String() + " on this port"
			return nil, true
		}
		resp.YourIPAddr = net.IPv4zero
		resp.UpdateOption(dhcpv4.OptServerIdentifier(ip4(x.s.cfg.ServerIP)))
		return resp, false
	}
}

// networkHandler adds the subnet's mask, router, name servers and domain.
func networkHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		opts := &x.s.opts
		if x.subnet.IsValid() {
			setOption(resp, dhcpv4.OptionSubnetMask, net.CIDRMask(x.subnet.Bits(), 32))
		}
		if x.router.IsValid() {
			setOption(resp, dhcpv4.OptionRouter, ip4(x.router))
		}
		if opts.dns != nil {
			setOption(resp, dhcpv4.OptionDomainNameServer, opts.dns)
		}
		if opts.domain != nil {
			setOption(resp, dhcpv4.OptionDomainName, opts.domain)
		}
		return resp, false
	}
}

// bootHandler hands a netbooting client its boot file: the HTTP URL of the
// EFI binary to a UEFI HTTP boot client, boot.ipxe to iPXE, and otherwise
// the binary for the client's architecture over TFTP. Machines that may not
// netboot get nothing.
func bootHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		cfg := &x.s.cfg
		if !x.c.netboot() || !x.pxeAllowed() {
			return resp, false
		}
		arch := x.c.arch
		switch {
		case x.c.httpClient:
			if !x.c.hasArch {
				arch = 16
			}
			file, ok := cfg.BootFiles[arch]
			if !ok || cfg.BootURL == "" {
				return resp, false
			}
			x.boot = cfg.BootURL + cfg.HTTPBootPath + file
			resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
		case x.c.ipxe && (!cfg.ChainIPXE || x.s.served.seen(x.c.mac, time.Now())):
			if cfg.BootURL == "" {
				return resp, false
			}
			x.boot = cfg.BootURL + "/boot.ipxe"
		default:
			file, ok := cfg.BootFiles[arch]
			if !ok {
				return resp, false
			}
			x.boot = file
			resp.ServerIPAddr = ip4(cfg.ServerIP)
			resp.ServerHostName = cfg.ServerIP.String()
			resp.UpdateOption(dhcpv4.OptTFTPServerName(cfg.ServerIP.String()))
			x.s.served.mark(x.c.mac, time.Now())
		}
		// iPXE takes a proxy reply's boot file only with a next-server
		// address beside it (dhcp_has_pxeopts), even for an HTTP URL.
		resp.ServerIPAddr = ip4(cfg.ServerIP)
		resp.BootFileName = x.boot
		resp.UpdateOption(dhcpv4.OptBootFileName(x.boot))
		return resp, false
	}
}

// pxeVendorHandler adds what PXE firmware expects beside a boot file:
// option 60 PXEClient, option 43 telling it to boot the file directly
// (discovery control 8) and its GUID (option 97) echoed.
func pxeVendorHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		if !x.c.pxe || x.boot == "" {
			return resp, false
		}
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		if x.c.guid != nil {
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, x.c.guid))
		}
		return resp, false
	}
}

// ipxeHandler sets iPXE's no-pxedhcp (175.176 = 1) for iPXE clients: with
// the address and boot URL from this server, iPXE need not wait for
// proxyDHCP offers.
func ipxeHandler(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		if x.c.ipxe {
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1}))
		}
		return resp, false
	}
}

// requireBoot drops replies without a boot file (proxy mode has nothing
// else to give).
func requireBoot(x *exchange) Handler {
	return func(req, resp *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, bool) {
		if x.boot == "" {
			if x.dropWhy == "" {
				x.dropWhy = "no boot file for this client"
			}
			return nil, true
		}
		return resp, false
	}
}
