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
)

// dhcpClient is one raw socket on an interface shared by every simulated
// machine: replies are handed to the machine waiting on their
// transaction id.
type dhcpClient struct {
	conn net.PacketConn
	mu   sync.Mutex
	wait map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	done chan struct{}
}

func newDHCPClient(iface string) (*dhcpClient, error) {
	conn, err := nclient4.NewRawUDPConn(iface, dhcpv4.ClientPort)
	if err != nil {
		return nil, fmt.Errorf("DHCP raw socket on %s: %w", iface, err)
	}
	c := &dhcpClient{conn: conn, wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *dhcpClient) close() {
	c.conn.Close()
	<-c.done
}

func (c *dhcpClient) read() {
	defer close(c.done)
	buf := make([]byte, 4096)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
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

// exchange sends req until a reply of one of the wanted types comes back
// (or a NAK), resending every timeout, at most tries times.
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
	for range tries {
		if _, err := c.conn.WriteTo(req.ToBytes(), dst); err != nil {
			return nil, fmt.Errorf("send %s: %w", req.MessageType(), err)
		}
		timer := time.NewTimer(timeout)
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
