package dhcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var a = netip.MustParseAddr

// memStorage is a LeaseStorage in memory, with the SQLite store's rules:
// a commit applies all its writes or none, and a MAC has at most one lease
// that is not declined. fail, when set, fails the next commits.
type memStorage struct {
	mu     sync.Mutex
	leases map[netip.Addr]Lease
	fail   error
}

func newMemStorage() *memStorage { return &memStorage{leases: map[netip.Addr]Lease{}} }

func (m *memStorage) LoadLeases(context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.String() < out[j].IP.String() })
	return out, nil
}

func (m *memStorage) CommitLeases(_ context.Context, writes []LeaseWrite) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	next := maps.Clone(m.leases)
	for _, w := range writes {
		if w.Delete {
			if cur, ok := next[w.Lease.IP]; ok && cur.MAC == w.Lease.MAC {
				delete(next, w.Lease.IP)
			}
			continue
		}
		next[w.Lease.IP] = w.Lease
	}
	holder := map[string]netip.Addr{}
	for ip, l := range next {
		if l.State == LeaseDeclined {
			continue
		}
		if other, ok := holder[l.MAC]; ok {
			return fmt.Errorf("write lease %s of %s: MAC already leases %s", ip, l.MAC, other)
		}
		holder[l.MAC] = ip
	}
	m.leases = next
	return nil
}

func (m *memStorage) LeaseByIP(_ context.Context, ip netip.Addr) (Lease, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[ip]
	return l, ok, nil
}

func openLeases(t *testing.T, storage LeaseStorage, clock *fakeClock, start, end string) *Allocator {
	t.Helper()
	l, err := OpenAllocator(context.Background(), AllocatorConfig{
		Ranges: []LeaseRange{{Start: a(start), End: a(end)}}, Storage: storage, Now: clock.Now,
		OfferHold: 30 * time.Second, DeclineHold: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func mustOffer(t *testing.T, l *Allocator, req OfferRequest) netip.Addr {
	t.Helper()
	ip, err := l.Offer(req)
	if err != nil {
		t.Fatalf("offer to %s: %v", req.MAC, err)
	}
	return ip
}

func mustBind(t *testing.T, l *Allocator, mac string, ip netip.Addr) Lease {
	t.Helper()
	lease, err := l.Bind(context.Background(), BindRequest{MAC: mac, IP: ip, TTL: time.Hour})
	if err != nil {
		t.Fatalf("bind %s to %s: %v", ip, mac, err)
	}
	return lease
}

func TestLeaseAllocation(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.0.0.10", "10.0.0.12")
	const m1, m2, m3, m4 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04"

	ip1 := mustOffer(t, l, OfferRequest{MAC: m1})
	if again := mustOffer(t, l, OfferRequest{MAC: m1}); again != ip1 {
		t.Fatalf("second offer to the same MAC: %s, first %s", again, ip1)
	}
	ip2 := mustOffer(t, l, OfferRequest{MAC: m2, Requested: ip1})
	if ip2 == ip1 {
		t.Fatalf("address %s offered to two MACs", ip1)
	}
	// An address offered to m1 cannot be bound by m2.
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m2, IP: ip1, TTL: time.Hour}); !errors.Is(err, ErrAddressTaken) {
		t.Fatalf("bind of another MAC's offer: %v, want ErrAddressTaken", err)
	}
	mustBind(t, l, m1, ip1)
	mustBind(t, l, m2, ip2)
	ip3 := mustOffer(t, l, OfferRequest{MAC: m3})
	mustBind(t, l, m3, ip3)
	if _, err := l.Offer(OfferRequest{MAC: m4}); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("offer from a full range: %v, want ErrNoFreeAddress", err)
	}
	// Outside the range: refused unless it is a reservation.
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m4, IP: a("10.0.0.99"), TTL: time.Hour}); !errors.Is(err, ErrNotInRange) {
		t.Fatalf("bind outside the range: %v, want ErrNotInRange", err)
	}
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m4, IP: a("10.0.0.99"), TTL: time.Hour, Reserved: true}); err != nil {
		t.Fatalf("bind of a reservation outside the range: %v", err)
	}
	// Expiry: m1's lease ends, the address goes to m4 (the oldest expired).
	clock.Add(2 * time.Hour)
	if got := mustOffer(t, l, OfferRequest{MAC: "02:00:00:00:00:05"}); got != ip1 && got != ip2 && got != ip3 {
		t.Fatalf("reclaimed %s, want one of the expired addresses", got)
	}
}

func TestLeaseReservationAndAffinity(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.0.0.10", "10.0.0.50")
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	res := a("10.0.0.5")
	if got := mustOffer(t, l, OfferRequest{MAC: m1, Reserved: res, Requested: a("10.0.0.20")}); got != res {
		t.Fatalf("offer with reservation: %s, want %s", got, res)
	}
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m1, IP: res, TTL: time.Hour, Reserved: true}); err != nil {
		t.Fatal(err)
	}
	// Another MAC claiming the same reservation (a conflict) gets a range address.
	if got := mustOffer(t, l, OfferRequest{MAC: m2, Reserved: res}); got == res {
		t.Fatalf("reserved address %s held by %s offered to %s", res, m1, m2)
	}
	// A released lease returns to its MAC.
	ip := mustOffer(t, l, OfferRequest{MAC: m2})
	mustBind(t, l, m2, ip)
	if err := l.Release(context.Background(), m2, ip); err != nil {
		t.Fatal(err)
	}
	if got := mustOffer(t, l, OfferRequest{MAC: m2}); got != ip {
		t.Fatalf("offer after release: %s, want the released %s", got, ip)
	}
	if err := l.Release(context.Background(), m1, ip); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("release of another MAC's address: %v, want ErrNotLeased", err)
	}
}

func TestLeaseDecline(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.0.0.10", "10.0.0.11")
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	ip := mustOffer(t, l, OfferRequest{MAC: m1})
	mustBind(t, l, m1, ip)
	if err := l.Decline(context.Background(), m1, ip); err != nil {
		t.Fatal(err)
	}
	other := mustOffer(t, l, OfferRequest{MAC: m1})
	if other == ip {
		t.Fatalf("declined %s offered again to the MAC that declined it", ip)
	}
	mustBind(t, l, m1, other)
	if _, err := l.Offer(OfferRequest{MAC: m2}); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("offer while the only other address is declined: %v", err)
	}
	clock.Add(11 * time.Minute)
	if got := mustOffer(t, l, OfferRequest{MAC: m2}); got != ip {
		t.Fatalf("after the decline hold: offered %s, want %s", got, ip)
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	clock := newClock()
	storage := newMemStorage()
	l, err := OpenAllocator(context.Background(), AllocatorConfig{Ranges: []LeaseRange{{Start: a("10.0.0.10"), End: a("10.0.0.200")}}, Storage: storage, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]netip.Addr{}
	for i := range 20 {
		mac := fmt.Sprintf("02:00:00:00:01:%02x", i)
		ip, err := l.Offer(OfferRequest{MAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Bind(context.Background(), BindRequest{MAC: mac, IP: ip, TTL: time.Hour, Hostname: "h"}); err != nil {
			t.Fatal(err)
		}
		want[mac] = ip
	}
	l.Close()

	l2 := openLeases(t, storage, clock, "10.0.0.10", "10.0.0.200")
	for mac, ip := range want {
		got, ok := l2.Lookup(mac)
		if !ok || got.IP != ip || got.State != LeaseBound || got.Hostname != "h" {
			t.Fatalf("after restart, lease of %s: %+v %v, want %s bound", mac, got, ok, ip)
		}
		if off := mustOffer(t, l2, OfferRequest{MAC: mac}); off != ip {
			t.Fatalf("after restart, offer to %s: %s, want %s", mac, off, ip)
		}
	}
	if ip := mustOffer(t, l2, OfferRequest{MAC: "02:00:00:00:02:00"}); want["02:00:00:00:01:00"] == ip {
		t.Fatal("after restart, a new MAC got a leased address")
	}
}

// TestLeasesConcurrent races many MACs for a small range, each asking for
// the same address first: no address may end up bound to two MACs, in
// memory or on disk.
func TestLeasesConcurrent(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.0.0.1", "10.0.0.64")
	var wg sync.WaitGroup
	var mu sync.Mutex
	bound := map[netip.Addr]string{}
	for i := range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
			// Everyone also tries to bind 10.0.0.1 directly (REQUEST without OFFER).
			tries := []netip.Addr{a("10.0.0.1")}
			if ip, err := l.Offer(OfferRequest{MAC: mac, Requested: a("10.0.0.1")}); err == nil {
				tries = append(tries, ip)
			}
			for _, ip := range tries {
				lease, err := l.Bind(context.Background(), BindRequest{MAC: mac, IP: ip, TTL: time.Hour})
				if err != nil {
					continue
				}
				mu.Lock()
				if other, ok := bound[lease.IP]; ok && other != mac {
					t.Errorf("%s bound to %s and %s", lease.IP, other, mac)
				}
				for ip2, m2 := range bound {
					if m2 == mac && ip2 != lease.IP {
						delete(bound, ip2) // moved: one lease per MAC
					}
				}
				bound[lease.IP] = mac
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bound) != 64 {
		t.Errorf("%d addresses bound, want all 64", len(bound))
	}
	stored, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ips, macs := map[netip.Addr]bool{}, map[string]bool{}
	for _, s := range stored {
		if ips[s.IP] || macs[s.MAC] {
			t.Errorf("stored twice: %+v", s)
		}
		ips[s.IP], macs[s.MAC] = true, true
		if bound[s.IP] != s.MAC {
			t.Errorf("stored %s for %s, granted to %q", s.IP, s.MAC, bound[s.IP])
		}
	}
	if len(stored) != len(bound) {
		t.Errorf("%d leases stored, %d granted", len(stored), len(bound))
	}
}

// TestBindFailsWhenCommitFails: a lease the storage could not commit is not
// granted, and the allocator's memory agrees with the storage afterwards.
func TestBindFailsWhenCommitFails(t *testing.T) {
	clock := newClock()
	storage := newMemStorage()
	l := openLeases(t, storage, clock, "10.0.0.10", "10.0.0.11")
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	ip := mustOffer(t, l, OfferRequest{MAC: m1})
	mustBind(t, l, m1, ip)
	other := mustOffer(t, l, OfferRequest{MAC: m2})

	storage.mu.Lock()
	storage.fail = errors.New("disk full")
	storage.mu.Unlock()
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m2, IP: other, TTL: time.Hour}); err == nil {
		t.Fatal("bind succeeded while the storage fails")
	}
	if lease, ok := l.Lookup(m2); ok && lease.State == LeaseBound {
		t.Fatalf("failed bind left a bound lease in memory: %+v", lease)
	}
	// A move of m1 to the other address fails too and keeps m1's lease.
	if _, err := l.Bind(context.Background(), BindRequest{MAC: m1, IP: other, TTL: time.Hour}); err == nil {
		t.Fatal("move succeeded while the storage fails")
	}
	storage.mu.Lock()
	storage.fail = nil
	storage.mu.Unlock()
	if lease, ok := l.Lookup(m1); !ok || lease.IP != ip || lease.State != LeaseBound {
		t.Fatalf("after a failed move, lease of %s: %+v %v, want %s bound", m1, lease, ok, ip)
	}
	stored, err := l.List(context.Background())
	if err != nil || len(stored) != 1 || stored[0].IP != ip || stored[0].MAC != m1 {
		t.Fatalf("stored leases after failed commits: %+v %v", stored, err)
	}
	mustBind(t, l, m2, mustOffer(t, l, OfferRequest{MAC: m2}))
}

// TestWithdrawOffer: an offer withdrawn (the client chose another server)
// frees its address at once, where it was held for OfferHold before; a
// bound lease is not withdrawn.
func TestWithdrawOffer(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.9.0.100", "10.9.0.100") // one address
	a := mustOffer(t, l, OfferRequest{MAC: "52:54:00:00:00:01"})
	if _, err := l.Offer(OfferRequest{MAC: "52:54:00:00:00:02"}); !errors.Is(err, ErrNoFreeAddress) {
		t.Fatalf("offer while the only address is offered to another MAC: %v, want ErrNoFreeAddress", err)
	}
	if l.Withdraw("52:54:00:00:00:09", [4]byte{9}) {
		t.Error("withdrew an offer of a MAC that holds none")
	}
	if !l.Withdraw("52:54:00:00:00:01", [4]byte{1}) {
		t.Fatal("the offer was not withdrawn")
	}
	if _, ok := l.Lookup("52:54:00:00:00:01"); ok {
		t.Error("the MAC still holds the withdrawn offer")
	}
	if b := mustOffer(t, l, OfferRequest{MAC: "52:54:00:00:00:02"}); b != a {
		t.Fatalf("after the withdrawal the other MAC was offered %s, want %s", b, a)
	}
	mustBind(t, l, "52:54:00:00:00:02", a)
	if l.Withdraw("52:54:00:00:00:02", [4]byte{2}) {
		t.Error("withdrew a bound lease")
	}
	if lease, ok := l.Lookup("52:54:00:00:00:02"); !ok || lease.State != LeaseBound {
		t.Errorf("after a refused withdrawal the lease is %+v, want bound", lease)
	}
}

// TestNoOfferAfterChoosingAnother: a DISCOVER handled after its
// transaction's REQUEST named another server (handled concurrently, or
// retransmitted late) is offered nothing, so no address stays held for a
// client that is bound elsewhere; the client's next transaction, and the
// same transaction once choiceMemory has passed, are offered an address.
func TestNoOfferAfterChoosingAnother(t *testing.T) {
	clock := newClock()
	l := openLeases(t, newMemStorage(), clock, "10.9.0.100", "10.9.0.100") // one address
	const m1, m2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
	xid := [4]byte{1, 2, 3, 4}
	if l.Withdraw(m1, xid) {
		t.Fatal("withdrew an offer that was never made")
	}
	if ip, err := l.Offer(OfferRequest{MAC: m1, XID: xid}); !errors.Is(err, ErrChoseOtherServer) {
		t.Fatalf("DISCOVER after its REQUEST chose another server: offered %s (%v), want ErrChoseOtherServer", ip, err)
	}
	// The only address is free for the next client.
	a := mustOffer(t, l, OfferRequest{MAC: m2})
	if !l.Withdraw(m2, [4]byte{2}) {
		t.Fatal("the offer to the second client was not withdrawn")
	}
	// The first client's next transaction is answered.
	if b := mustOffer(t, l, OfferRequest{MAC: m1, XID: [4]byte{5}}); b != a {
		t.Fatalf("a new transaction was offered %s, want %s", b, a)
	}
	l.Withdraw(m1, [4]byte{5})
	clock.Add(choiceMemory + time.Second)
	if b := mustOffer(t, l, OfferRequest{MAC: m1, XID: [4]byte{5}}); b != a {
		t.Fatalf("the same transaction after the memory passed was offered %s, want %s", b, a)
	}
}
