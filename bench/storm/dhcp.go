package storm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// dhcpClient is one raw socket on an interface shared by every simulated
// machine: replies are handed to the machine waiting on their
// transaction id.
type dhcpClient struct {
	conn net.PacketConn
	mu   sync.Mutex
	wait map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	stop chan struct{} // closed to end the reader
	done chan struct{} // closed when the reader has ended
}

// readPoll bounds each read of the raw socket, so that the reader notices
// stop: closing a raw socket does not wake a read blocked on it.
const readPoll = 200 * time.Millisecond

// dhcpReplyFilter keeps, of the IP packets the raw socket sees, only the
// UDP datagrams to port 68: without it the socket also queues every TFTP
// and HTTP packet of the storm, and the DHCP replies are dropped when its
// buffer overflows.
func dhcpReplyFilter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},                        // IP protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: 3}, // not UDP: drop
		bpf.LoadMemShift{Off: 0},                                 // X = IP header length
		bpf.LoadIndirect{Off: 2, Size: 2},                        // UDP destination port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpv4.ClientPort, SkipFalse: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	}
}

// setReadBuffer sets the socket's receive buffer (beyond rmem_max: the
// storm runs as root).
func setReadBuffer(c *packet.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	return serr
}

func newDHCPClient(iface string) (*dhcpClient, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("DHCP interface: %w", err)
	}
	filter, err := bpf.Assemble(dhcpReplyFilter())
	if err != nil {
		return nil, fmt.Errorf("DHCP socket filter: %w", err)
	}
	raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("DHCP raw socket on %s: %w", iface, err)
	}
	// A storm's replies come in bursts: room for thousands of them.
	if err := setReadBuffer(raw, 8<<20); err != nil {
		raw.Close()
		return nil, fmt.Errorf("DHCP raw socket on %s: read buffer: %w", iface, err)
	}
	conn := nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: dhcpv4.ClientPort})
	c := &dhcpClient{conn: conn, wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *dhcpClient) close() {
	close(c.stop)
	<-c.done
	c.conn.Close()
}

func (c *dhcpClient) read() {
	defer close(c.done)
	buf := make([]byte, 4096)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		if err := c.conn.SetReadDeadline(time.Now().Add(readPoll)); err != nil {
			return // the socket cannot time out reads: stop rather than block close forever
		}
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a deadline, or a datagram that was not DHCP
		}
		msg, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || msg.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		c.mu.Lock()
		ch := c.wait[msg.TransactionID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- msg:
			default:
			}
		}
	}
}

// exchange sends req until a reply of the wanted type comes back (or a
// NAK), at most tries times, waiting timeout after the first send and
// twice as long after each next one (the PXE specification's 4, 8, 16, 32
// seconds with a timeout of 4s).
func (c *dhcpClient) exchange(ctx context.Context, req *dhcpv4.DHCPv4, timeout time.Duration, tries int, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	c.mu.Lock()
	c.wait[req.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.wait, req.TransactionID)
		c.mu.Unlock()
	}()
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	for try := range tries {
		if _, err := c.conn.WriteTo(req.ToBytes(), dst); err != nil {
			return nil, fmt.Errorf("send %s: %w", req.MessageType(), err)
		}
		timer := time.NewTimer(timeout << try) // doubled at each try, as PXE ROMs do
	wait:
		for {
			select {
			case resp := <-ch:
				switch resp.MessageType() {
				case want:
					timer.Stop()
					return resp, nil
				case dhcpv4.MessageTypeNak:
					timer.Stop()
					return nil, fmt.Errorf("%s answered by NAK: %s", req.MessageType(), resp.Message())
				}
			case <-timer.C:
				break wait
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			}
		}
	}
	return nil, fmt.Errorf("%s: %w after %d tries", req.MessageType(), errNoAnswer, tries)
}

// pxeOptions make a request look like a BIOS PXE ROM's.
func pxeOptions() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
}

// dhcp gets the machine an address: DISCOVER, OFFER, REQUEST, ACK.
func (m *machine) dhcp(ctx context.Context, cfg *Config, dc *dhcpClient) error {
	disc, err := dhcpv4.NewDiscovery(m.mac, pxeOptions()...)
	if err != nil {
		return fmt.Errorf("build DISCOVER: %w", err)
	}
	offer, err := dc.exchange(ctx, disc, cfg.DHCPTimeout, cfg.DHCPTries, dhcpv4.MessageTypeOffer)
	if err != nil {
		return err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, pxeOptions()...)
	if err != nil {
		return fmt.Errorf("build REQUEST: %w", err)
	}
	ack, err := dc.exchange(ctx, req, cfg.DHCPTimeout, cfg.DHCPTries, dhcpv4.MessageTypeAck)
	if err != nil {
		return err
	}
	if ack.YourIPAddr.IsUnspecified() {
		return errors.New("ACK without an address")
	}
	m.ip = ack.YourIPAddr
	m.bootFile = ack.BootFileName
	if m.bootFile == "" {
		m.bootFile = offer.BootFileName
	}
	return nil
}
