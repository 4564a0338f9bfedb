package dhcp

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"sync"
	"time"
)

// LeaseState is the state of a DHCP lease.
type LeaseState string

// Lease states. Offered leases live in memory only; the others are stored.
const (
	LeaseOffered  LeaseState = "offered"
	LeaseBound    LeaseState = "bound"
	LeaseReleased LeaseState = "released"
	LeaseDeclined LeaseState = "declined"
)

// Lease is an IPv4 address held by a MAC address until Expires.
type Lease struct {
	IP       netip.Addr
	MAC      string
	Hostname string
	Expires  time.Time
	State    LeaseState
}

// LeaseRange is an inclusive range of IPv4 addresses handed out dynamically.
type LeaseRange struct {
	Start, End netip.Addr
}

// AllocatorConfig configures an Allocator.
type AllocatorConfig struct {
	// Ranges are the dynamic address ranges; they must not overlap.
	Ranges []LeaseRange
	// Storage keeps the leases (the store package's SQLite store).
	Storage LeaseStorage
	// OfferHold is how long an offered address stays reserved for the MAC it
	// was offered to (default 30s).
	OfferHold time.Duration
	// DeclineHold is how long a declined address is left unused (default 10m).
	DeclineHold time.Duration
	// MaxBatch is the most lease writes committed in one transaction
	// (default 1024). A batch is whatever waits when the writer is free, so
	// a larger bound adds no latency: it lets one fsync acknowledge more
	// REQUESTs when a burst queues behind a slow commit. 1 disables group
	// commit.
	MaxBatch int
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Logger receives warnings about stored leases (default: discarded).
	Logger *slog.Logger
	// Metrics receives the lease writer's queueing and commit times
	// (default: none).
	Metrics *Metrics
}

// LeaseStorage is where an Allocator keeps its leases. The allocator holds
// the allocation state (who holds what, which addresses are free) in
// memory: it reads the storage once, when opened, and from then on only
// writes to it, from one goroutine, so that a lease is durable before the
// server acknowledges it. The store package implements it on SQLite.
//
// On a store shared by several servers (store/etcdstore), CommitLeases is
// a compare-and-swap transaction that also refuses an address another MAC
// holds (bound, offered or declined, not expired), whatever this
// allocator's memory says, with an error wrapping ErrAddressTaken: the
// server NAKs, and Bind learns the holder's lease through LeaseByIP so
// that the address is not offered again. The one lease per MAC, kept by a
// unique index on SQLite, is a second key per MAC there.
type LeaseStorage interface {
	// LoadLeases returns every stored lease, ordered by address text.
	LoadLeases(ctx context.Context) ([]Lease, error)
	// CommitLeases applies writes, in order, in one transaction, and
	// returns once it is durable (SQLite: synchronous FULL); on error none
	// of them is applied. A MAC has at most one lease that is not
	// declined: a write that would give it a second fails.
	CommitLeases(ctx context.Context, writes []LeaseWrite) error
	// LeaseByIP returns the stored lease on an address, if any.
	LeaseByIP(ctx context.Context, ip netip.Addr) (Lease, bool, error)
}

// LeaseWrite is one change to the stored leases: put Lease (replacing
// whatever lease its address had) or, with Delete, remove the lease of
// Lease.MAC on Lease.IP (a no-op when the address is leased to another
// MAC).
type LeaseWrite struct {
	Lease  Lease
	Delete bool
}

// Errors returned by the allocator.
var (
	// ErrNoFreeAddress means every address of the ranges is in use.
	ErrNoFreeAddress = errors.New("no free address")
	// ErrAddressTaken means the address is leased to, offered to or
	// declined by another MAC.
	ErrAddressTaken = errors.New("address in use by another client")
	// ErrNotInRange means the address is in none of the ranges of the subnet.
	ErrNotInRange = errors.New("address not in a dynamic range")
	// ErrNotLeased means the MAC holds no lease on the address.
	ErrNotLeased = errors.New("address not leased to this client")
	// ErrLeasesClosed means the allocator was closed.
	ErrLeasesClosed = errors.New("lease allocator closed")
	// ErrNotExtended means a renewal could not be committed (the storage
	// failed), but the client holds a committed lease on the address
	// until the returned lease's expiry: it may keep the address that
	// long, and no longer, since no other server knows of an extension.
	ErrNotExtended = errors.New("lease not extended")
	// ErrChoseOtherServer means the client already chose another server
	// for this transaction (its REQUEST named that server before the
	// DISCOVER was answered here): an offer now would never be taken.
	ErrChoseOtherServer = errors.New("client already chose another server for this transaction")
)

// Allocator hands out the addresses of the dynamic ranges and the
// reservations, and keeps the leases: the allocation state (who holds
// what, which addresses are free) is kept in memory, loaded once from the
// LeaseStorage when opened and updated with every write, so that an
// allocation never reads the storage. Writes from concurrent callers are
// committed together (group commit); each call returns only after its own
// write is committed. It is safe for concurrent use.
type Allocator struct {
	cfg AllocatorConfig

	mu     sync.Mutex
	ranges []*leaseRange
	byIP   map[netip.Addr]*leaseEntry
	byMAC  map[string]*leaseEntry

	// The writer's mirror of the stored leases (address to MAC, and MAC to
	// its non-declined address), so that a write knows without a query
	// which stored lease it replaces.
	storedIP  map[netip.Addr]string
	storedMAC map[string]netip.Addr
	writes    []LeaseWrite

	// chose remembers, for a short time, the transactions whose REQUEST
	// named another server (MAC to transaction), so that their DISCOVER,
	// answered after it (packets are handled concurrently, and a
	// retransmitted DISCOVER may arrive late), holds no address.
	chose map[string]choice

	ops     chan *leaseOp
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	opPool  sync.Pool
}

// choice is a transaction in which a client chose another server.
type choice struct {
	xid     [4]byte
	expires int64 // unix nanoseconds
}

// choiceMemory is how long a choice of another server is remembered: a
// client retransmits the DISCOVER of one transaction for a few seconds
// (RFC 2131 section 4.1: 4, 8, 16 ... seconds apart, up to about a
// minute); a new transaction (another xid) is answered at once.
const choiceMemory = 10 * time.Second

// leaseEntry is the in-memory state of one address. Entries are replaced,
// not modified, when the address changes hands.
type leaseEntry struct {
	ip       netip.Addr
	mac      string
	hostname string
	expires  int64 // unix nanoseconds
	state    LeaseState
	pending  bool // a write for this entry is being committed
	rng      *leaseRange
}

// leaseRange is a dynamic range with a bitmap of the addresses that have an
// entry and a heap of entries by expiry, for reclaiming.
type leaseRange struct {
	start, end uint32
	used       []uint64
	free       int
	cursor     uint32
	expiry     expiryHeap
}

type expiryItem struct {
	expires int64
	e       *leaseEntry
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (r *leaseRange) contains(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	v := addrU32(ip)
	return v >= r.start && v <= r.end
}

func (r *leaseRange) mark(ip netip.Addr, used bool) {
	i := addrU32(ip) - r.start
	w, b := i/64, uint64(1)<<(i%64)
	if (r.used[w]&b != 0) == used {
		return
	}
	if used {
		r.used[w] |= b
		r.free--
	} else {
		r.used[w] &^= b
		r.free++
	}
}

// nextFree returns an address without an entry, searching from the cursor.
func (r *leaseRange) nextFree() (netip.Addr, bool) {
	if r.free == 0 {
		return netip.Addr{}, false
	}
	size := r.end - r.start + 1
	words := uint32(len(r.used))
	start := r.cursor / 64
	for n := uint32(0); n <= words; n++ {
		w := (start + n) % words
		free := ^r.used[w]
		if w == words-1 && size%64 != 0 {
			free &= (uint64(1) << (size % 64)) - 1
		}
		if free == 0 {
			continue
		}
		i := w*64 + uint32(bits.TrailingZeros64(free))
		r.cursor = i + 1
		if r.cursor >= size {
			r.cursor = 0
		}
		return u32Addr(r.start + i), true
	}
	return netip.Addr{}, false
}

// OpenAllocator loads the stored leases and starts the lease writer.
// Close stops it.
func OpenAllocator(ctx context.Context, cfg AllocatorConfig) (*Allocator, error) {
	if cfg.Storage == nil {
		return nil, errors.New("open lease allocator: no lease storage")
	}
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = 30 * time.Second
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = 10 * time.Minute
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Allocator{
		cfg:     cfg,
		byIP:    map[netip.Addr]*leaseEntry{},
		byMAC:   map[string]*leaseEntry{},
		chose:   map[string]choice{},
		ops:     make(chan *leaseOp, 4096),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.opPool.New = func() any { return &leaseOp{done: make(chan error, 1)} }
	for i, r := range cfg.Ranges {
		if !r.Start.Is4() || !r.End.Is4() || r.End.Less(r.Start) {
			return nil, fmt.Errorf("open leases: range %d (%s-%s): want two IPv4 addresses, start <= end", i, r.Start, r.End)
		}
		lr := &leaseRange{start: addrU32(r.Start), end: addrU32(r.End)}
		size := lr.end - lr.start + 1
		lr.used = make([]uint64, (size+63)/64)
		lr.free = int(size)
		for _, o := range l.ranges {
			if lr.start <= o.end && o.start <= lr.end {
				return nil, fmt.Errorf("open leases: range %s-%s overlaps range %s-%s", r.Start, r.End, u32Addr(o.start), u32Addr(o.end))
			}
		}
		l.ranges = append(l.ranges, lr)
	}
	stored, err := cfg.Storage.LoadLeases(ctx)
	if err != nil {
		return nil, fmt.Errorf("open leases: %w", err)
	}
	for _, lease := range stored {
		if !lease.IP.Is4() {
			l.cfg.Logger.Warn("ignoring stored lease with a bad address", "ip", lease.IP, "mac", lease.MAC)
			continue
		}
		e := &leaseEntry{ip: lease.IP, mac: lease.MAC, hostname: lease.Hostname, expires: lease.Expires.UnixNano(), state: lease.State}
		l.setEntry(e)
		if e.state != LeaseDeclined {
			l.byMAC[lease.MAC] = e
		}
	}
	l.mirror(stored)
	go l.writer()
	return l, nil
}

// mirror (re)builds the writer's mirror of the stored leases.
func (l *Allocator) mirror(stored []Lease) {
	l.storedIP, l.storedMAC = make(map[netip.Addr]string, len(stored)), make(map[string]netip.Addr, len(stored))
	for _, lease := range stored {
		l.storedIP[lease.IP] = lease.MAC
		if lease.State != LeaseDeclined {
			l.storedMAC[lease.MAC] = lease.IP
		}
	}
}

// Close stops the lease writer after the writes in flight are committed.
func (l *Allocator) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.stopped
	})
	<-l.stopped
	return nil
}

func (l *Allocator) rangeOf(ip netip.Addr) *leaseRange {
	for _, r := range l.ranges {
		if r.contains(ip) {
			return r
		}
	}
	return nil
}

// setEntry makes e the entry of its address (mu held).
func (l *Allocator) setEntry(e *leaseEntry) {
	if old := l.byIP[e.ip]; old != nil && old.mac != e.mac && l.byMAC[old.mac] == old {
		delete(l.byMAC, old.mac)
	}
	l.byIP[e.ip] = e
	if e.rng == nil {
		e.rng = l.rangeOf(e.ip)
	}
	if e.rng != nil {
		e.rng.mark(e.ip, true)
		l.pushExpiry(e)
	}
}

// dropEntry frees e's address (mu held).
func (l *Allocator) dropEntry(e *leaseEntry) {
	if l.byIP[e.ip] != e {
		return
	}
	delete(l.byIP, e.ip)
	if l.byMAC[e.mac] == e {
		delete(l.byMAC, e.mac)
	}
	if e.rng != nil {
		e.rng.mark(e.ip, false)
	}
}

func (l *Allocator) pushExpiry(e *leaseEntry) {
	r := e.rng
	heap.Push(&r.expiry, expiryItem{expires: e.expires, e: e})
	// Renewals leave stale items behind: rebuild when they dominate.
	if n := len(r.expiry); n > 1024 && n > 4*int(r.end-r.start+1-uint32(r.free)) {
		live := r.expiry[:0]
		for _, it := range r.expiry {
			if l.byIP[it.e.ip] == it.e && it.e.expires == it.expires {
				live = append(live, it)
			}
		}
		clear(r.expiry[len(live):])
		r.expiry = live
		heap.Init(&r.expiry)
	}
}

// reclaimable reports whether another MAC may take e's address at now.
func (e *leaseEntry) reclaimable(now int64) bool {
	return !e.pending && e.expires <= now
}

// reclaim returns an address of r whose lease expired, the oldest first.
func (l *Allocator) reclaim(r *leaseRange, now int64) (netip.Addr, bool) {
	for len(r.expiry) > 0 {
		it := r.expiry[0]
		if it.expires > now {
			return netip.Addr{}, false
		}
		heap.Pop(&r.expiry)
		if l.byIP[it.e.ip] == it.e && it.e.expires == it.expires && it.e.reclaimable(now) {
			return it.e.ip, true
		}
	}
	return netip.Addr{}, false
}

// OfferRequest asks for an address to offer.
type OfferRequest struct {
	// MAC is the client's normalised MAC address.
	MAC string
	// Subnet restricts the address to the ranges inside it (all ranges when
	// invalid).
	Subnet netip.Prefix
	// Reserved is the client's reserved address (tried first), if any.
	Reserved netip.Addr
	// Requested is the address the client asked for (option 50), if any.
	Requested netip.Addr
	// XID is the DISCOVER's transaction id: no address is offered in a
	// transaction whose REQUEST already named another server (Withdraw).
	XID [4]byte
}

// Offer picks an address for a client and holds it for OfferHold: the
// client's reservation if free, else the address it already holds, else the
// one it asks for, else a never-used address, else the one whose lease
// expired first. It writes nothing to the database.
func (l *Allocator) Offer(req OfferRequest) (netip.Addr, error) {
	now := l.cfg.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.chose[req.MAC]; ok {
		if c.expires > now && c.xid == req.XID {
			return netip.Addr{}, ErrChoseOtherServer
		}
		delete(l.chose, req.MAC)
	}
	inSubnet := func(ip netip.Addr) bool { return !req.Subnet.IsValid() || req.Subnet.Contains(ip) }
	availableTo := func(ip netip.Addr) bool {
		e := l.byIP[ip]
		if e == nil {
			return true
		}
		if e.mac == req.MAC {
			return e.state != LeaseDeclined || e.expires <= now
		}
		return e.reclaimable(now)
	}
	if req.Reserved.Is4() && inSubnet(req.Reserved) && availableTo(req.Reserved) {
		return l.hold(req.MAC, req.Reserved, now), nil
	}
	if e := l.byMAC[req.MAC]; e != nil && l.byIP[e.ip] == e && e.rng != nil && inSubnet(e.ip) && e.state != LeaseDeclined {
		return l.hold(req.MAC, e.ip, now), nil
	}
	if req.Requested.Is4() && inSubnet(req.Requested) && l.rangeOf(req.Requested) != nil && availableTo(req.Requested) {
		return l.hold(req.MAC, req.Requested, now), nil
	}
	for _, r := range l.ranges {
		if !inSubnet(u32Addr(r.start)) {
			continue
		}
		if ip, ok := r.nextFree(); ok {
			return l.hold(req.MAC, ip, now), nil
		}
	}
	for _, r := range l.ranges {
		if !inSubnet(u32Addr(r.start)) {
			continue
		}
		if ip, ok := l.reclaim(r, now); ok {
			return l.hold(req.MAC, ip, now), nil
		}
	}
	return netip.Addr{}, ErrNoFreeAddress
}

// hold reserves ip for mac for OfferHold (mu held).
func (l *Allocator) hold(mac string, ip netip.Addr, now int64) netip.Addr {
	if e := l.byIP[ip]; e != nil && e.mac == mac && (e.pending || (e.state == LeaseBound && e.expires > now)) {
		l.byMAC[mac] = e
		return ip
	}
	e := &leaseEntry{ip: ip, mac: mac, state: LeaseOffered, expires: now + int64(l.cfg.OfferHold)}
	if old := l.byIP[ip]; old != nil && old.mac == mac {
		e.hostname = old.hostname
	}
	l.setEntry(e)
	l.byMAC[mac] = e
	return ip
}

// BindRequest asks to bind (or renew) a lease.
type BindRequest struct {
	MAC      string
	IP       netip.Addr
	Hostname string
	TTL      time.Duration
	// Subnet is the subnet the client is on; the address must be in it.
	Subnet netip.Prefix
	// Reserved allows an address outside the dynamic ranges: the caller
	// checked that it is the client's reservation.
	Reserved bool
}

// Bind leases an address to a MAC and returns once the lease is committed
// to the database: ErrAddressTaken when another MAC holds it, ErrNotInRange
// when it is not ours to give. A renewal that the database fails to take
// returns the lease committed before, unextended, with ErrNotExtended. A MAC holds one lease: its previous address,
// if any, is freed in the same transaction.
func (l *Allocator) Bind(ctx context.Context, req BindRequest) (Lease, error) {
	now := l.cfg.Now()
	nowNs := now.UnixNano()
	l.mu.Lock()
	if !req.IP.Is4() || (req.Subnet.IsValid() && !req.Subnet.Contains(req.IP)) {
		l.mu.Unlock()
		return Lease{}, fmt.Errorf("bind %s to %s: %w", req.IP, req.MAC, ErrNotInRange)
	}
	if !req.Reserved && l.rangeOf(req.IP) == nil {
		l.mu.Unlock()
		return Lease{}, fmt.Errorf("bind %s to %s: %w", req.IP, req.MAC, ErrNotInRange)
	}
	prev := l.byIP[req.IP]
	held := l.byMAC[req.MAC] // the MAC's entry before this bind
	if prev != nil && prev.mac != req.MAC && !prev.reclaimable(nowNs) {
		l.mu.Unlock()
		return Lease{}, fmt.Errorf("bind %s to %s: %w", req.IP, req.MAC, ErrAddressTaken)
	}
	if prev != nil && prev.mac == req.MAC && prev.state == LeaseDeclined && prev.expires > nowNs {
		l.mu.Unlock()
		return Lease{}, fmt.Errorf("bind %s to %s: declined by the client: %w", req.IP, req.MAC, ErrAddressTaken)
	}
	host := req.Hostname
	if host == "" && prev != nil && prev.mac == req.MAC {
		host = prev.hostname
	}
	// Expiry is stored in whole seconds: keep memory and disk equal.
	exp := now.Add(req.TTL).Truncate(time.Second)
	e := &leaseEntry{ip: req.IP, mac: req.MAC, hostname: host, expires: exp.UnixNano(), state: LeaseBound, pending: true}
	l.setEntry(e)
	l.byMAC[req.MAC] = e
	l.mu.Unlock()

	lease := Lease{IP: req.IP, MAC: req.MAC, Hostname: host, Expires: exp, State: LeaseBound}
	freed, err := l.write(ctx, lease, true)
	// A storage shared with other servers refuses an address one of them
	// holds: learn its lease so that it is not offered again.
	var holder Lease
	var learned bool
	if errors.Is(err, ErrAddressTaken) {
		holder, learned, _ = l.cfg.Storage.LeaseByIP(ctx, req.IP)
		learned = learned && holder.MAC != req.MAC
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil && !learned && prev != nil && prev.mac == req.MAC && prev.state == LeaseBound &&
		!prev.pending && prev.expires > l.cfg.Now().UnixNano() && l.byIP[req.IP] == e {
		// A renewal the storage did not take: the lease committed
		// before still holds, unextended.
		l.dropEntry(e)
		l.setEntry(prev)
		l.byMAC[prev.mac] = prev
		kept := Lease{IP: prev.ip, MAC: prev.mac, Hostname: prev.hostname, Expires: time.Unix(0, prev.expires), State: LeaseBound}
		return kept, fmt.Errorf("renew %s of %s: %w: %w", req.IP, req.MAC, ErrNotExtended, err)
	}
	if err != nil {
		if l.byIP[req.IP] == e {
			l.dropEntry(e)
			switch {
			case learned:
				l.setEntry(&leaseEntry{ip: holder.IP, mac: holder.MAC, hostname: holder.Hostname, expires: holder.Expires.UnixNano(), state: holder.State})
			case prev != nil:
				l.setEntry(prev)
				if prev.state != LeaseDeclined && l.byMAC[prev.mac] == nil {
					l.byMAC[prev.mac] = prev
				}
			}
			// The MAC keeps the lease it held elsewhere.
			if held != nil && held != prev && l.byMAC[req.MAC] == nil && l.byIP[held.ip] == held {
				l.byMAC[req.MAC] = held
			}
		}
		return Lease{}, fmt.Errorf("bind %s to %s: %w", req.IP, req.MAC, err)
	}
	e.pending = false
	for _, ip := range freed {
		if old := l.byIP[ip]; old != nil && old.mac == req.MAC && old != e && !old.pending {
			l.dropEntry(old)
		}
	}
	return lease, nil
}

// Release ends a MAC's lease on an address now. The address stays
// associated with the MAC until another client needs it.
func (l *Allocator) Release(ctx context.Context, mac string, ip netip.Addr) error {
	return l.end(ctx, mac, ip, LeaseReleased, 0)
}

// Decline marks an address a client found in use: it is given to no one for
// DeclineHold, and the client is offered another address.
func (l *Allocator) Decline(ctx context.Context, mac string, ip netip.Addr) error {
	return l.end(ctx, mac, ip, LeaseDeclined, l.cfg.DeclineHold)
}

func (l *Allocator) end(ctx context.Context, mac string, ip netip.Addr, state LeaseState, hold time.Duration) error {
	now := l.cfg.Now()
	l.mu.Lock()
	e := l.byIP[ip]
	if e == nil || e.mac != mac || e.pending || e.state == LeaseDeclined || (state == LeaseReleased && e.state != LeaseBound) {
		l.mu.Unlock()
		return fmt.Errorf("%s %s by %s: %w", state, ip, mac, ErrNotLeased)
	}
	exp := now.Add(hold).Truncate(time.Second)
	ne := &leaseEntry{ip: ip, mac: mac, hostname: e.hostname, expires: exp.UnixNano(), state: state, pending: true}
	l.setEntry(ne)
	if state == LeaseDeclined {
		delete(l.byMAC, mac)
	} else {
		l.byMAC[mac] = ne
	}
	l.mu.Unlock()
	_, err := l.write(ctx, Lease{IP: ip, MAC: mac, Hostname: ne.hostname, Expires: exp, State: state}, false)
	l.mu.Lock()
	defer l.mu.Unlock()
	ne.pending = false
	if err != nil {
		return fmt.Errorf("%s %s by %s: %w", state, ip, mac, err)
	}
	return nil
}

// Withdraw drops the offer a MAC holds when an offer is all it holds (not
// a bound lease, nor one being written): its address is free again at
// once instead of after OfferHold. RFC 2131 (section 3.1, step 4) lets a
// server that the client did not choose, its REQUEST naming another
// server identifier, take the REQUEST as the decline of its offer. It
// reports whether an offer was dropped. The transaction xid is remembered
// for a few seconds: a DISCOVER of that transaction handled after the
// REQUEST (concurrently, or retransmitted late) is offered nothing, or
// its address would stay held, unused, for OfferHold.
func (l *Allocator) Withdraw(mac string, xid [4]byte) bool {
	now := l.cfg.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rememberChoice(mac, xid, now)
	e := l.byMAC[mac]
	if e == nil || l.byIP[e.ip] != e || e.state != LeaseOffered || e.pending {
		return false
	}
	l.dropEntry(e)
	return true
}

// rememberChoice records that mac chose another server in transaction xid
// (mu held). Expired choices are dropped once the memory has grown, so it
// holds at most the transactions of the last choiceMemory, plus 1,024.
func (l *Allocator) rememberChoice(mac string, xid [4]byte, now int64) {
	if len(l.chose) >= 1024 && len(l.chose)%1024 == 0 {
		for m, c := range l.chose {
			if c.expires <= now {
				delete(l.chose, m)
			}
		}
	}
	l.chose[mac] = choice{xid: xid, expires: now + int64(choiceMemory)}
}

// Lookup returns the lease (bound, offered or released) a MAC holds.
func (l *Allocator) Lookup(mac string) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byMAC[mac]
	if e == nil || l.byIP[e.ip] != e {
		return Lease{}, false
	}
	return Lease{IP: e.ip, MAC: e.mac, Hostname: e.hostname, Expires: time.Unix(0, e.expires), State: e.state}, true
}

// List returns the stored leases, ordered by address text.
func (l *Allocator) List(ctx context.Context) ([]Lease, error) {
	out, err := l.cfg.Storage.LoadLeases(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// leaseOp is one lease write waiting for the writer.
type leaseOp struct {
	lease       Lease
	moveFromMAC bool      // delete the MAC's other leases
	queued      time.Time // when it was queued
	freed       []netip.Addr
	done        chan error
}

// write queues a lease write and waits for its commit.
func (l *Allocator) write(ctx context.Context, lease Lease, move bool) ([]netip.Addr, error) {
	op := l.opPool.Get().(*leaseOp)
	op.lease, op.moveFromMAC, op.freed = lease, move, op.freed[:0]
	if l.cfg.Metrics != nil {
		op.queued = time.Now()
	}
	select {
	case l.ops <- op:
	case <-l.stop:
		return nil, ErrLeasesClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the write is committed or failed by the writer: wait for
	// it even if ctx ends, so that memory and disk agree.
	err := <-op.done
	var freed []netip.Addr
	if len(op.freed) > 0 {
		freed = append(freed, op.freed...)
	}
	l.opPool.Put(op)
	return freed, err
}

// writer commits queued lease writes, as many as are waiting (up to
// MaxBatch) in one transaction.
func (l *Allocator) writer() {
	defer close(l.stopped)
	batch := make([]*leaseOp, 0, l.cfg.MaxBatch)
	var queued []time.Time
	for {
		select {
		case op := <-l.ops:
			batch = append(batch[:0], op)
		drain:
			for len(batch) < l.cfg.MaxBatch {
				select {
				case op := <-l.ops:
					batch = append(batch, op)
				default:
					break drain
				}
			}
			queued = queued[:0]
			if l.cfg.Metrics != nil {
				for _, op := range batch {
					queued = append(queued, op.queued)
				}
			}
			start := time.Now()
			err := l.commit(batch)
			took := time.Since(start)
			for _, op := range batch {
				op.done <- err
			}
			if l.cfg.Metrics != nil {
				l.cfg.Metrics.observeCommit(queued, start, took)
			}
		case <-l.stop:
			for {
				select {
				case op := <-l.ops:
					op.done <- l.commit([]*leaseOp{op})
				default:
					return
				}
			}
		}
	}
}

func (l *Allocator) commit(batch []*leaseOp) error {
	err := l.commitTx(batch)
	if err == nil || len(batch) == 1 {
		return err
	}
	// One bad write must not fail the others: retry them one by one.
	var errs []error
	for _, op := range batch {
		if err := l.commitTx([]*leaseOp{op}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// commitTx writes a batch in one transaction, in queue order.
func (l *Allocator) commitTx(batch []*leaseOp) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writes := l.writes[:0]
	for _, op := range batch {
		op.freed = op.freed[:0]
		lease := op.lease
		// A MAC has one non-declined lease: a bound lease on another
		// address replaces it.
		if old, ok := l.storedMAC[lease.MAC]; ok && old != lease.IP && op.moveFromMAC {
			writes = append(writes, LeaseWrite{Lease: Lease{IP: old, MAC: lease.MAC}, Delete: true})
			delete(l.storedMAC, lease.MAC)
			delete(l.storedIP, old)
			op.freed = append(op.freed, old)
		}
		writes = append(writes, LeaseWrite{Lease: lease})
		if prev, ok := l.storedIP[lease.IP]; ok && l.storedMAC[prev] == lease.IP {
			delete(l.storedMAC, prev)
		}
		l.storedIP[lease.IP] = lease.MAC
		if lease.State != LeaseDeclined {
			l.storedMAC[lease.MAC] = lease.IP
		}
	}
	err := l.cfg.Storage.CommitLeases(ctx, writes)
	clear(writes)
	l.writes = writes[:0]
	if err != nil {
		// The mirror holds changes that were not applied.
		stored, rerr := l.cfg.Storage.LoadLeases(ctx)
		if rerr != nil {
			return errors.Join(err, fmt.Errorf("reload leases: %w", rerr))
		}
		l.mirror(stored)
	}
	return err
}
