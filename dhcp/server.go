package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"matchbox/matchbox"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Ports the server listens on.
const (
	// ServerPort is the DHCP server port.
	ServerPort = 67
	// ClientPort is the DHCP client port.
	ClientPort = 68
	// ProxyPort is the PXE boot server port proxyDHCP answers on.
	ProxyPort = 4011
)

// Server is a DHCPv4 server for network boot.
type Server struct {
	cfg     Config
	served  servedCache
	clients clientAddrs
	sem     chan struct{}
	wg      sync.WaitGroup
	bufs    sync.Pool
	conns   []*net.UDPConn
	ports   []int
	ready   bool
	opts    replyOptions
	// workersStarted counts the worker goroutines readLoop started.
	workersStarted atomic.Int64
}

// New checks cfg and returns a server. Call Listen, then Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode == ModeAuthoritative && cfg.Leases == nil {
		return nil, errors.New("dhcp: authoritative mode needs a lease allocator")
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, sem: make(chan struct{}, cfg.Workers)}
	s.served.ttl = cfg.ServedTTL
	s.bufs.New = func() any { b := make([]byte, 1500); return &b }
	if cfg.Interface == "" {
		// Without an interface everything must be given (tests, packet
		// handling without sockets).
		if err := s.cfg.finish(netip.Prefix{}); err != nil {
			return nil, err
		}
		s.opts = newReplyOptions(&s.cfg)
		s.ready = true
	}
	return s, nil
}

// Listen opens the server's sockets on the interface, in the calling
// thread's network namespace: port 67, and 4011 in proxy mode. It derives
// the server address and subnet from the interface when they are not set.
func (s *Server) Listen() error {
	if s.cfg.Interface == "" {
		return fieldErr("Interface", "no interface to listen on")
	}
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("dhcp: interface %q: %w", s.cfg.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("dhcp: addresses of interface %q: %w", s.cfg.Interface, err)
	}
	var ifaceAddr netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
				if !s.cfg.ServerIP.IsValid() || p.Addr() == s.cfg.ServerIP {
					ifaceAddr = p
					break
				}
			}
		}
	}
	if err := s.cfg.finish(ifaceAddr); err != nil {
		return err
	}
	ports := []int{ServerPort}
	if s.cfg.Mode == ModeProxy {
		ports = append(ports, ProxyPort)
	}
	for _, port := range ports {
		c, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: port})
		if err != nil {
			s.closeConns()
			return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, port, err)
		}
		setReadBuffer(c, readBufferBytes)
		s.conns = append(s.conns, c)
		s.ports = append(s.ports, port)
	}
	s.opts = newReplyOptions(&s.cfg)
	s.ready = true
	s.cfg.Logger.Info("dhcp listening", "mode", s.cfg.Mode, "interface", s.cfg.Interface,
		"server_ip", s.cfg.ServerIP, "subnet", s.cfg.Subnet, "ports", ports)
	return nil
}

// readBufferBytes is the socket receive buffer asked for: a burst of
// requests (a rack powering on) waits in it while workers are busy, instead
// of being dropped by the kernel.
const readBufferBytes = 4 << 20

// setReadBuffer raises c's receive buffer, past net.core.rmem_max when the
// process may (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which a DHCP server
// usually has), else up to it.
func setReadBuffer(c *net.UDPConn, n int) {
	raw, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if err == nil && serr == nil {
			return
		}
	}
	c.SetReadBuffer(n)
}

func (s *Server) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// Serve answers requests until ctx ends, then waits for the requests in
// flight.
func (s *Server) Serve(ctx context.Context) error {
	if len(s.conns) == 0 {
		return errors.New("dhcp: Serve before Listen")
	}
	errc := make(chan error, len(s.conns))
	// The read loops count in wg too: a loop starts workers (wg.Add) only
	// while it counts itself, so wg never reaches zero under Wait while
	// a loop may still add to it.
	s.wg.Add(len(s.conns))
	for i, c := range s.conns {
		go func() {
			defer s.wg.Done()
			errc <- s.readLoop(ctx, c, s.ports[i])
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.closeConns()
	s.wg.Wait()
	return err
}

// packet is one request read from a socket, waiting for a worker.
type packet struct {
	buf  *[]byte
	n    int
	peer netip.AddrPort
	read time.Time
}

// workerIdle is how long a worker waits for another request before it
// ends: a burst's workers stay for the next burst, a quiet server keeps none.
const workerIdle = 10 * time.Second

// packetConn is the socket readLoop reads requests from and answers on.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// readLoop reads requests from c and hands each to a worker. Workers live
// on between requests (their goroutine's stack, grown by the first
// request, serves the next ones: a goroutine per request grew a fresh
// stack every time); an idle worker takes the request, else a new worker
// is started, up to Config.Workers at once; beyond that the request is
// dropped and counted (overload).
func (s *Server) readLoop(ctx context.Context, c packetConn, port int) error {
	jobs := make(chan packet)
	defer close(jobs)
	for {
		bp := s.bufs.Get().(*[]byte)
		n, peer, err := c.ReadFromUDPAddrPort(*bp)
		read := time.Now()
		if err != nil {
			s.bufs.Put(bp)
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp: read on port %d: %w", port, err)
		}
		p := packet{buf: bp, n: n, peer: peer, read: read}
		select {
		case jobs <- p:
			continue
		default:
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.bufs.Put(bp)
			s.cfg.Metrics.dropped.WithLabelValues(dropOverload).Inc()
			continue
		}
		s.wg.Add(1)
		s.workersStarted.Add(1)
		go s.worker(ctx, c, port, p, jobs)
	}
}

// worker answers p, then the requests readLoop hands it, until jobs is
// closed or it has been idle for workerIdle.
func (s *Server) worker(ctx context.Context, c packetConn, port int, p packet, jobs <-chan packet) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.answer(ctx, c, port, p)
		idle.Reset(workerIdle)
		var ok bool
		select {
		case p, ok = <-jobs:
			if !ok {
				return
			}
		case <-idle.C:
			return
		}
	}
}

// answer handles one request read from c and sends its reply.
func (s *Server) answer(ctx context.Context, c packetConn, port int, p packet) {
	resp, dst := s.HandlePacket(ctx, (*p.buf)[:p.n], p.peer, port)
	s.bufs.Put(p.buf)
	if resp == nil {
		return
	}
	if _, err := c.WriteToUDPAddrPort(resp.ToBytes(), dst); err != nil {
		s.cfg.Metrics.dropped.WithLabelValues(dropError).Inc()
		s.cfg.Logger.Warn("dhcp: send reply failed", "to", dst, "err", err)
		return
	}
	mt := resp.MessageType()
	s.cfg.Metrics.replies.WithLabelValues(mt.String()).Inc()
	s.cfg.Metrics.reply.WithLabelValues(eventName(mt)).Observe(time.Since(p.read).Seconds())
}

// HandlePacket answers one raw request that came from peer to port: it
// returns the reply and where to send it, or nil when the request gets no
// answer (malformed, not for this server, released, ...).
func (s *Server) HandlePacket(ctx context.Context, pkt []byte, peer netip.AddrPort, port int) (*dhcpv4.DHCPv4, netip.AddrPort) {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet ||
		len(req.ClientHWAddr) != 6 || req.MessageType() == dhcpv4.MessageTypeNone {
		s.cfg.Metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return nil, netip.AddrPort{}
	}
	return s.Handle(ctx, req, peer, port)
}

// Handle answers one parsed request (see HandlePacket).
func (s *Server) Handle(ctx context.Context, req *dhcpv4.DHCPv4, peer netip.AddrPort, port int) (*dhcpv4.DHCPv4, netip.AddrPort) {
	mt := req.MessageType()
	s.cfg.Metrics.received.WithLabelValues(mt.String()).Inc()
	x := &exchange{ctx: ctx, s: s, c: classify(req), port: port}
	if s.cfg.Machines != nil {
		x.machine, x.known = s.cfg.Machines.LookupMachine(ctx, x.c.mac, x.c.uuid)
	}
	relay := addrOf(req.GatewayIPAddr)
	if !s.subnetFor(x, relay) {
		s.cfg.Metrics.dropped.WithLabelValues(dropNoSubnet).Inc()
		s.cfg.Logger.Debug("dhcp: no subnet for relay", "mac", x.c.mac, "giaddr", relay)
		return nil, netip.AddrPort{}
	}
	// Remember which MAC uses which address, also for addresses another
	// DHCP server gave (proxy mode): TFTP transfers name only the address.
	if ip := addrOf(req.ClientIPAddr); ip.IsValid() {
		s.clients.note(ip, x.c.mac, time.Now())
	} else if ip := addrOf(req.RequestedIPAddress()); ip.IsValid() && mt == dhcpv4.MessageTypeRequest {
		s.clients.note(ip, x.c.mac, time.Now())
	}

	switch mt {
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		s.event(x, "dhcp."+eventName(mt), nil)
		s.leaseEnd(x, req)
		return nil, netip.AddrPort{}
	}

	resp := newReply(req)
	var chain []Handler
	if s.cfg.Mode == ModeProxy {
		chain = []Handler{proxyHandler(x), bootHandler(x), pxeVendorHandler(x), requireBoot(x)}
	} else {
		chain = []Handler{leaseHandler(x), networkHandler(x), bootHandler(x), pxeVendorHandler(x), ipxeHandler(x)}
	}
	resp = runChain(req, resp, chain...)
	if resp == nil {
		reason := dropIgnored
		if x.dropReason != "" {
			reason = x.dropReason
		}
		s.cfg.Metrics.dropped.WithLabelValues(reason).Inc()
		s.cfg.Logger.Debug("dhcp: no reply", "mac", x.c.mac, "type", mt.String(), "why", x.dropWhy)
		detail := map[string]any{"reply": "none"}
		if x.dropWhy != "" {
			detail["reason"] = x.dropWhy
		}
		s.event(x, "dhcp."+eventName(mt), detail)
		return nil, netip.AddrPort{}
	}
	// One event per exchange, named by the answer: dhcp.offer (a DISCOVER
	// answered), dhcp.ack, dhcp.nak; requests left unanswered are events of
	// their own type.
	rt := resp.MessageType()
	detail := map[string]any{"request": eventName(mt)}
	if x.ip.IsValid() {
		detail["ip"] = x.ip.String()
	}
	if x.boot != "" {
		detail["boot_file"] = x.boot
	}
	if x.nakWhy != "" {
		detail["reason"] = x.nakWhy
	}
	s.event(x, "dhcp."+eventName(rt), detail)
	if x.ip.IsValid() && rt == dhcpv4.MessageTypeAck {
		s.clients.note(x.ip, x.c.mac, time.Now())
	}
	return resp, s.destination(req, resp, peer, port)
}

// newReply is dhcpv4.NewReplyFromRequest without its random transaction
// ID: the library draws 4 bytes from crypto/rand for every packet (a
// getrandom call, 3 % of the server's CPU at 4,000 exchanges/s) and then
// overwrites them with the request's. The reply echoes the request's
// transaction ID, flags, hardware address, relay address and its relay
// agent information (option 82) and client identifier (RFC 6842).
func newReply(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		ClientHWAddr:  req.ClientHWAddr,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		Options:       make(dhcpv4.Options, 12),
	}
	for _, code := range [...]dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			resp.Options[code.Code()] = v
		}
	}
	return resp
}

// ClientMAC returns the MAC of the client last seen using ip (as its
// address or the one it requested) within the last day.
func (s *Server) ClientMAC(ip netip.Addr) (string, bool) {
	return s.clients.lookup(ip, time.Now())
}

// subnetFor picks the request's subnet: the one holding the relay address
// for relayed requests, the interface's otherwise.
func (s *Server) subnetFor(x *exchange, relay netip.Addr) bool {
	if !relay.IsValid() {
		x.subnet, x.router = s.cfg.Subnet, s.cfg.Router
		for _, r := range s.cfg.Ranges {
			if r.Subnet == x.subnet && r.Router.IsValid() {
				x.router = r.Router
				break
			}
		}
		return true
	}
	for _, r := range s.cfg.Ranges {
		if r.Subnet.Contains(relay) {
			x.subnet, x.router = r.Subnet, r.Router
			return true
		}
	}
	if s.cfg.Mode == ModeProxy || (s.cfg.Subnet.IsValid() && s.cfg.Subnet.Contains(relay)) {
		x.subnet, x.router = s.cfg.Subnet, s.cfg.Router
		return true
	}
	return false
}

// destination says where a reply goes (RFC 2131 4.1): to the relay, to the
// client's address when it has one, else broadcast on the interface.
//
// A request to port 4011 is answered on the port it came from, by
// broadcast when it did not come through a relay: PXE firmware and iPXE
// send it from the address their DHCP server offered before they configure
// it, so they answer no ARP request for it and a unicast reply would never
// leave this host (dnsmasq plants an ARP entry instead). The reply carries
// only boot information.
func (s *Server) destination(req, resp *dhcpv4.DHCPv4, peer netip.AddrPort, port int) netip.AddrPort {
	relay := addrOf(req.GatewayIPAddr)
	if port == ProxyPort && peer.IsValid() && !peer.Addr().IsUnspecified() {
		if relay.IsValid() {
			return peer
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), peer.Port())
	}
	if relay.IsValid() {
		return netip.AddrPortFrom(relay, ServerPort)
	}
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return netip.AddrPortFrom(ci, ClientPort)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
}

// leaseEnd honours a RELEASE or DECLINE (authoritative mode).
func (s *Server) leaseEnd(x *exchange, req *dhcpv4.DHCPv4) {
	if s.cfg.Mode != ModeAuthoritative {
		return
	}
	if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerIP {
		s.cfg.Metrics.dropped.WithLabelValues(dropNotForUs).Inc()
		return
	}
	var err error
	if req.MessageType() == dhcpv4.MessageTypeRelease {
		err = s.cfg.Leases.Release(x.ctx, x.c.mac, addrOf(req.ClientIPAddr))
	} else {
		err = s.cfg.Leases.Decline(x.ctx, x.c.mac, addrOf(req.RequestedIPAddress()))
	}
	if err != nil {
		s.cfg.Logger.Debug("dhcp: "+req.MessageType().String()+" not honoured", "mac", x.c.mac, "err", err)
	}
}

// event records a boot event on the client's timeline.
func (s *Server) event(x *exchange, typ string, detail map[string]any) {
	if s.cfg.Events == nil {
		return
	}
	ev := matchbox.BootEvent{MAC: x.c.mac, UUID: x.c.uuid, Type: typ, Detail: detail}
	if x.known {
		ev.MachineID = x.machine.ID
	}
	s.cfg.Events.Record(ev)
}

func eventName(mt dhcpv4.MessageType) string {
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeInform:
		return "inform"
	}
	return "other"
}

// clientAddrTTL is how long an address-to-MAC note is trusted.
const clientAddrTTL = 24 * time.Hour

// clientAddrs maps the addresses clients use to their MACs.
type clientAddrs struct {
	mu sync.Mutex
	m  map[netip.Addr]clientAddr
	// sweptAt is when notes older than clientAddrTTL were last removed;
	// sweeps counts the removals (read by tests).
	sweptAt time.Time
	sweeps  int
}

type clientAddr struct {
	mac string
	at  time.Time
}

// clientAddrsSweepAt is the number of notes past which note removes the
// expired ones, at most once per clientAddrsSweepEvery: with every note
// fresh (a fleet of this size renewing within the TTL), a sweep removes
// nothing, and sweeping on every note would walk the whole map under the
// lock for every request.
const (
	clientAddrsSweepAt    = 65536
	clientAddrsSweepEvery = time.Minute
)

func (c *clientAddrs) note(ip netip.Addr, mac string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[netip.Addr]clientAddr{}
	}
	if len(c.m) >= clientAddrsSweepAt && now.Sub(c.sweptAt) >= clientAddrsSweepEvery {
		for k, v := range c.m {
			if now.Sub(v.at) > clientAddrTTL {
				delete(c.m, k)
			}
		}
		c.sweptAt = now
		c.sweeps++
	}
	c.m[ip] = clientAddr{mac: mac, at: now}
}

func (c *clientAddrs) lookup(ip netip.Addr, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[ip]
	if !ok || now.Sub(v.at) > clientAddrTTL {
		return "", false
	}
	return v.mac, true
}

// servedCache remembers, per MAC and for a while, that a boot binary was
// handed out.
type servedCache struct {
	ttl time.Duration
	mu  sync.Mutex
	at  map[string]time.Time
}

func (c *servedCache) mark(mac string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	if len(c.at) >= 4096 {
		for k, t := range c.at {
			if now.Sub(t) > c.ttl {
				delete(c.at, k)
			}
		}
	}
	c.at[mac] = now
}

// seen reports whether mac was served within the TTL.
func (c *servedCache) seen(mac string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[mac]
	return ok && now.Sub(t) <= c.ttl
}
