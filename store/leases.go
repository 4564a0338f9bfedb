package store

import (
	"container/heap"
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// LeasesConfig configures the lease store.
type LeasesConfig struct {
	// Ranges are the dynamic address ranges; they must not overlap.
	Ranges []LeaseRange
	// OfferHold is how long an offered address stays reserved for the MAC it
	// was offered to (default 30s).
	OfferHold time.Duration
	// DeclineHold is how long a declined address is left unused (default 10m).
	DeclineHold time.Duration
	// MaxBatch is the most lease writes committed in one transaction
	// (default 256). 1 disables group commit.
	MaxBatch int
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Errors returned by the lease store.
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
	// ErrLeasesClosed means the lease store was closed.
	ErrLeasesClosed = errors.New("lease store closed")
)

// Leases is the DHCP lease store: leases are persisted in SQLite, and the
// allocation state (who holds what, which addresses are free) is kept in
// memory, loaded once when opened and updated with every write, so that an
// allocation never reads the database. Writes from concurrent callers are
// committed together (group commit); each call returns only after its own
// write is committed. It is safe for concurrent use.
type Leases struct {
	st  *Store
	cfg LeasesConfig

	mu     sync.Mutex
	ranges []*leaseRange
	byIP   map[netip.Addr]*leaseEntry
	byMAC  map[string]*leaseEntry

	// The writer's mirror of the stored rows (address to MAC, and MAC to
	// its non-declined address), so that a write knows without a query
	// which row it replaces.
	storedIP  map[netip.Addr]string
	storedMAC map[string]netip.Addr
	upsert    *sql.Stmt
	del       *sql.Stmt

	ops     chan *leaseOp
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	opPool  sync.Pool
}

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

// OpenLeases loads the stored leases and starts the lease writer. Close
// stops it.
func (s *Store) OpenLeases(ctx context.Context, cfg LeasesConfig) (*Leases, error) {
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = 30 * time.Second
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = 10 * time.Minute
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Leases{
		st: s, cfg: cfg,
		byIP:    map[netip.Addr]*leaseEntry{},
		byMAC:   map[string]*leaseEntry{},
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
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	if err := l.loadStored(ctx); err != nil {
		return nil, err
	}
	var err error
	if l.upsert, err = s.write.PrepareContext(ctx, `INSERT INTO leases (ip, mac, hostname, expires_at, state, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, hostname = excluded.hostname, expires_at = excluded.expires_at,
		state = excluded.state, updated_at = excluded.updated_at`); err != nil {
		return nil, fmt.Errorf("open leases: prepare lease write: %w", err)
	}
	if l.del, err = s.write.PrepareContext(ctx, "DELETE FROM leases WHERE ip = ? AND mac = ?"); err != nil {
		l.upsert.Close()
		return nil, fmt.Errorf("open leases: prepare lease write: %w", err)
	}
	go l.writer()
	return l, nil
}

func (l *Leases) load(ctx context.Context) error {
	rows, err := l.st.Read().QueryContext(ctx, "SELECT ip, mac, hostname, expires_at, state FROM leases")
	if err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ip, mac, host, state string
		var exp int64
		if err := rows.Scan(&ip, &mac, &host, &exp, &state); err != nil {
			return fmt.Errorf("load leases: %w", err)
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil || !addr.Is4() {
			l.st.log.Warn("ignoring stored lease with a bad address", "ip", ip, "mac", mac)
			continue
		}
		e := &leaseEntry{ip: addr, mac: mac, hostname: host, expires: time.Unix(exp, 0).UnixNano(), state: LeaseState(state)}
		l.setEntry(e)
		if e.state != LeaseDeclined {
			l.byMAC[mac] = e
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	return nil
}

// loadStored (re)builds the writer's mirror of the stored rows.
func (l *Leases) loadStored(ctx context.Context) error {
	l.storedIP, l.storedMAC = map[netip.Addr]string{}, map[string]netip.Addr{}
	rows, err := l.st.write.QueryContext(ctx, "SELECT ip, mac, state FROM leases")
	if err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ip, mac, state string
		if err := rows.Scan(&ip, &mac, &state); err != nil {
			return fmt.Errorf("load leases: %w", err)
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			l.storedIP[a] = mac
			if state != string(LeaseDeclined) {
				l.storedMAC[mac] = a
			}
		}
	}
	return rows.Err()
}

// Close stops the lease writer after the writes in flight are committed.
func (l *Leases) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.stopped
		l.upsert.Close()
		l.del.Close()
	})
	<-l.stopped
	return nil
}

func (l *Leases) rangeOf(ip netip.Addr) *leaseRange {
	for _, r := range l.ranges {
		if r.contains(ip) {
			return r
		}
	}
	return nil
}

// setEntry makes e the entry of its address (mu held).
func (l *Leases) setEntry(e *leaseEntry) {
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
func (l *Leases) dropEntry(e *leaseEntry) {
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

func (l *Leases) pushExpiry(e *leaseEntry) {
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
func (l *Leases) reclaim(r *leaseRange, now int64) (netip.Addr, bool) {
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
}

// Offer picks an address for a client and holds it for OfferHold: the
// client's reservation if free, else the address it already holds, else the
// one it asks for, else a never-used address, else the one whose lease
// expired first. It writes nothing to the database.
func (l *Leases) Offer(req OfferRequest) (netip.Addr, error) {
	now := l.cfg.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
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
func (l *Leases) hold(mac string, ip netip.Addr, now int64) netip.Addr {
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
// when it is not ours to give. A MAC holds one lease: its previous address,
// if any, is freed in the same transaction.
func (l *Leases) Bind(ctx context.Context, req BindRequest) (Lease, error) {
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

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if l.byIP[req.IP] == e {
			l.dropEntry(e)
			if prev != nil {
				l.setEntry(prev)
				if prev.state != LeaseDeclined && l.byMAC[prev.mac] == nil {
					l.byMAC[prev.mac] = prev
				}
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
func (l *Leases) Release(ctx context.Context, mac string, ip netip.Addr) error {
	return l.end(ctx, mac, ip, LeaseReleased, 0)
}

// Decline marks an address a client found in use: it is given to no one for
// DeclineHold, and the client is offered another address.
func (l *Leases) Decline(ctx context.Context, mac string, ip netip.Addr) error {
	return l.end(ctx, mac, ip, LeaseDeclined, l.cfg.DeclineHold)
}

func (l *Leases) end(ctx context.Context, mac string, ip netip.Addr, state LeaseState, hold time.Duration) error {
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

// Lookup returns the lease (bound, offered or released) a MAC holds.
func (l *Leases) Lookup(mac string) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byMAC[mac]
	if e == nil || l.byIP[e.ip] != e {
		return Lease{}, false
	}
	return Lease{IP: e.ip, MAC: e.mac, Hostname: e.hostname, Expires: time.Unix(0, e.expires), State: e.state}, true
}

// List returns the stored leases, ordered by address text.
func (l *Leases) List(ctx context.Context) ([]Lease, error) {
	rows, err := l.st.Read().QueryContext(ctx, "SELECT ip, mac, hostname, expires_at, state FROM leases ORDER BY ip")
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var ip, mac, host, state string
		var exp int64
		if err := rows.Scan(&ip, &mac, &host, &exp, &state); err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		addr, _ := netip.ParseAddr(ip)
		out = append(out, Lease{IP: addr, MAC: mac, Hostname: host, Expires: time.Unix(exp, 0), State: LeaseState(state)})
	}
	return out, rows.Err()
}

// leaseOp is one lease write waiting for the writer.
type leaseOp struct {
	lease       Lease
	moveFromMAC bool // delete the MAC's other leases
	freed       []netip.Addr
	done        chan error
}

// write queues a lease write and waits for its commit.
func (l *Leases) write(ctx context.Context, lease Lease, move bool) ([]netip.Addr, error) {
	op := l.opPool.Get().(*leaseOp)
	op.lease, op.moveFromMAC, op.freed = lease, move, op.freed[:0]
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
func (l *Leases) writer() {
	defer close(l.stopped)
	batch := make([]*leaseOp, 0, l.cfg.MaxBatch)
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
			err := l.commit(batch)
			for _, op := range batch {
				op.done <- err
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

func (l *Leases) commit(batch []*leaseOp) error {
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
func (l *Leases) commitTx(batch []*leaseOp) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := l.cfg.Now().Unix()
	err := l.st.Update(ctx, func(tx *sql.Tx) error {
		up := tx.StmtContext(ctx, l.upsert)
		del := tx.StmtContext(ctx, l.del)
		for _, op := range batch {
			op.freed = op.freed[:0]
			lease := &op.lease
			ip := lease.IP.String()
			// A MAC has one non-declined row: a bound lease on another
			// address replaces it.
			if old, ok := l.storedMAC[lease.MAC]; ok && old != lease.IP && op.moveFromMAC {
				if _, err := del.ExecContext(ctx, old.String(), lease.MAC); err != nil {
					return fmt.Errorf("free previous lease %s of %s: %w", old, lease.MAC, err)
				}
				delete(l.storedMAC, lease.MAC)
				delete(l.storedIP, old)
				op.freed = append(op.freed, old)
			}
			if _, err := up.ExecContext(ctx, ip, lease.MAC, lease.Hostname, lease.Expires.Unix(), string(lease.State), now); err != nil {
				return fmt.Errorf("write lease %s of %s: %w", ip, lease.MAC, err)
			}
			if prev, ok := l.storedIP[lease.IP]; ok && l.storedMAC[prev] == lease.IP {
				delete(l.storedMAC, prev)
			}
			l.storedIP[lease.IP] = lease.MAC
			if lease.State != LeaseDeclined {
				l.storedMAC[lease.MAC] = lease.IP
			}
		}
		return nil
	})
	if err != nil {
		// The mirror may hold changes that were rolled back.
		if rerr := l.loadStored(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return err
}
