package dhcp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeConn is a socket fed by the test: reads return the packets sent to
// in, writes are collected on out.
type fakeConn struct {
	in   chan []byte
	out  chan *dhcpv4.DHCPv4
	once sync.Once
	done chan struct{}
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 256), out: make(chan *dhcpv4.DHCPv4, 256), done: make(chan struct{})}
}

func (c *fakeConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-c.in:
		return copy(b, p), netip.MustParseAddrPort("0.0.0.0:68"), nil
	case <-c.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *fakeConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	r, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	c.out <- r
	return len(b), nil
}

func (c *fakeConn) close() { c.once.Do(func() { close(c.done) }) }

// blockingMachines holds every lookup until release is closed.
type blockingMachines struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingMachines) LookupMachine(context.Context, string, string) (Machine, bool) {
	b.entered <- struct{}{}
	<-b.release
	return Machine{}, false
}

// serveFake runs s's read loop on c until the test ends.
func serveFake(t *testing.T, s *Server, c *fakeConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.readLoop(ctx, c, ServerPort) }()
	t.Cleanup(func() {
		cancel()
		c.close()
		if err := <-errc; err != nil {
			t.Errorf("read loop: %v", err)
		}
		s.wg.Wait()
	})
}

func TestWorkersServeManyRequests(t *testing.T) {
	s, _ := testServerWith(t, ModeAuthoritative, nil, nil)
	c := newFakeConn()
	serveFake(t, s, c)
	const n = 200
	for i := range n {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i % 8)}
		c.in <- request(dhcpv4.MessageTypeDiscover, mac).ToBytes()
		select {
		case r := <-c.out:
			if r.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("request %d: answered %s", i, r.MessageType())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d: no answer", i)
		}
	}
	// One request at a time: idle workers take them (a request that comes
	// while the last worker is still between its reply and its next wait
	// starts another, hence not exactly 1).
	if got := s.workersStarted.Load(); got > n/10 {
		t.Errorf("%d workers started for %d requests in turn, want a few", got, n)
	}
}

func TestWorkersBoundedAndOverloadCounted(t *testing.T) {
	bm := blockingMachines{entered: make(chan struct{}), release: make(chan struct{})}
	s, _ := testServerWith(t, ModeAuthoritative, nil, func(cfg *Config) {
		cfg.Workers = 2
		cfg.Machines = bm
	})
	c := newFakeConn()
	serveFake(t, s, c)
	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}, {2, 0, 0, 0, 0, 4}}
	for i, mac := range macs {
		c.in <- request(dhcpv4.MessageTypeDiscover, mac).ToBytes()
		if i < 2 {
			<-bm.entered // a worker holds it
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutilCount(s.cfg.Metrics.Dropped(dropOverload)) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("overload drops %v, want 2 (two workers busy, four requests)", testutilCount(s.cfg.Metrics.Dropped(dropOverload)))
		}
		time.Sleep(time.Millisecond)
	}
	close(bm.release)
	for range 2 {
		select {
		case <-c.out:
		case <-time.After(5 * time.Second):
			t.Fatal("a held request was not answered")
		}
	}
	if got := s.workersStarted.Load(); got != 2 {
		t.Errorf("%d workers started, want 2 (Config.Workers)", got)
	}
}

func TestNewReplyAsLibrary(t *testing.T) {
	plain := request(dhcpv4.MessageTypeDiscover, testMAC)
	relayed := request(dhcpv4.MessageTypeRequest, testMAC,
		dhcpv4.WithGatewayIP(net.IPv4(10, 9, 1, 1)),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0, 0, 0, 1})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 3, 'e', 't', '0'})))
	for name, req := range map[string]*dhcpv4.DHCPv4{"plain": plain, "relayed with client id": relayed} {
		t.Run(name, func(t *testing.T) {
			want, err := dhcpv4.NewReplyFromRequest(req)
			if err != nil {
				t.Fatal(err)
			}
			got := newReply(req)
			if diff := cmp.Diff(want.ToBytes(), got.ToBytes()); diff != "" {
				t.Errorf("reply bytes (-library +newReply):\n%s", diff)
			}
		})
	}
}
