package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/dhcp"
)

// Leases, under /<prefix>/:
//
//	leases/<ip>     the lease on an address: {"mac", "hostname", "expires", "state"}
//	lease-macs/<mac> the address of a MAC's lease that is not declined
//
// CommitLeases reads the keys a batch touches, applies the batch to what
// it read, and commits the result in one etcd transaction on the condition
// that none of those keys changed since the read (compare-and-swap on the
// address keys and on the MAC keys): the lease is in etcd, on a quorum of
// members, before the server acknowledges it. Applying refuses, as the
// SQLite store's unique index does, a second lease for a MAC, and, which
// only a shared store needs, a lease on an address another MAC holds (its
// lease bound, offered or declined and not expired): two allocators of two
// instances that both think an address free never both get it.

var _ dhcp.LeaseStorage = (*Store)(nil)

// leaseRecord is a lease's stored value.
type leaseRecord struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	Expires  int64  `json:"expires"` // Unix seconds
	State    string `json:"state"`
}

func (s *Store) leaseKey(ip netip.Addr) string { return s.root + "leases/" + ip.String() }
func (s *Store) leaseMACKey(mac string) string { return s.root + "lease-macs/" + mac }

func toLease(key string, value []byte, pfx string) (dhcp.Lease, error) {
	var r leaseRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return dhcp.Lease{}, fmt.Errorf("decode %s: %w", key, err)
	}
	ip, err := netip.ParseAddr(strings.TrimPrefix(key, pfx))
	if err != nil {
		return dhcp.Lease{}, fmt.Errorf("lease of %s: bad address in key %q", r.MAC, key)
	}
	return dhcp.Lease{IP: ip, MAC: r.MAC, Hostname: r.Hostname, Expires: time.Unix(r.Expires, 0), State: dhcp.LeaseState(r.State)}, nil
}

// LoadLeases returns every stored lease, ordered by address text. A lease
// that does not decode is skipped and logged.
func (s *Store) LoadLeases(ctx context.Context) ([]dhcp.Lease, error) {
	pfx := s.root + "leases/"
	resp, err := s.kv.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	out := make([]dhcp.Lease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		l, err := toLease(string(kv.Key), kv.Value, pfx)
		if err != nil {
			s.log.Warn("ignoring stored lease", "err", err)
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// LeaseByIP returns the stored lease on an address, if any.
func (s *Store) LeaseByIP(ctx context.Context, ip netip.Addr) (dhcp.Lease, bool, error) {
	resp, err := s.kv.Get(ctx, s.leaseKey(ip))
	if err != nil {
		return dhcp.Lease{}, false, fmt.Errorf("look up the lease on %s: %w", ip, err)
	}
	if len(resp.Kvs) == 0 {
		return dhcp.Lease{}, false, nil
	}
	l, err := toLease(string(resp.Kvs[0].Key), resp.Kvs[0].Value, s.root+"leases/")
	if err != nil {
		return dhcp.Lease{}, false, fmt.Errorf("look up the lease on %s: %w", ip, err)
	}
	return l, true, nil
}

// seenKeysMax bounds the lease keys an instance remembers (two per lease:
// its address and its MAC); past it, it forgets them all and reads again.
const seenKeysMax = 1 << 18

// leaseKeys are lease keys as this instance last read or wrote them: their
// mod revision and value. A batch applies itself to these instead of
// reading its keys first, and commits on the condition that each key is
// still at the revision remembered (a key never seen is taken for absent,
// revision 0, as it is for a new client's address and MAC). When another
// instance changed one, the condition fails, nothing is written, and the
// batch reads its keys from etcd and tries again: the guesses save a round
// trip to etcd per batch, and decide nothing the condition does not check.
type leaseKeys struct {
	mu   sync.Mutex
	keys map[string]seenKey
}

type seenKey struct {
	rev   int64
	value []byte
}

// recall fills st (and values) with what is remembered of keys not in st
// yet; keys never seen are taken for absent.
func (k *leaseKeys) recall(st *leaseState, keys []string, values map[string][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range keys {
		if _, done := st.rev[key]; done {
			continue
		}
		v, ok := k.keys[key]
		st.rev[key] = v.rev
		if ok {
			values[key] = v.value
		}
	}
}

// remember records keys read or written at rev with their values (nil:
// absent).
func (k *leaseKeys) remember(rev map[string]int64, values map[string][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil || len(k.keys)+len(rev) > seenKeysMax {
		k.keys = make(map[string]seenKey, len(rev))
	}
	for key, r := range rev {
		if v, ok := values[key]; ok && v != nil {
			k.keys[key] = seenKey{rev: r, value: v}
		} else {
			delete(k.keys, key)
		}
	}
}

// forget drops keys, so that the next batch reads them.
func (k *leaseKeys) forget(keys map[string]int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range keys {
		delete(k.keys, key)
	}
}

// leaseState is the part of the stored leases a batch touches, as read
// and then as the batch leaves it.
type leaseState struct {
	rev    map[string]int64            // key → mod revision when read (0: absent)
	leases map[netip.Addr]*leaseRecord // nil: no lease
	macs   map[string]string           // MAC → address text; "" none
}

// readKeys reads keys (in transactions of at most Config.MaxTxnOps reads) into
// st; keys already read are skipped. The reads need not share a revision:
// the commit compares every key with the revision read.
func (s *Store) readKeys(ctx context.Context, st *leaseState, keys []string) (map[string][]byte, error) {
	values := map[string][]byte{}
	var todo []string
	for _, k := range keys {
		if _, done := st.rev[k]; !done {
			todo = append(todo, k)
			st.rev[k] = 0
		}
	}
	for start := 0; start < len(todo); start += s.cfg.MaxTxnOps {
		chunk := todo[start:min(start+s.cfg.MaxTxnOps, len(todo))]
		ops := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = clientv3.OpGet(k)
		}
		resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				st.rev[string(kv.Key)] = kv.ModRevision
				values[string(kv.Key)] = kv.Value
			}
		}
	}
	return values, nil
}

// CommitLeases applies lease writes, in order, in one etcd transaction
// (see above). A batch refused because another MAC holds an address
// returns an error wrapping dhcp.ErrAddressTaken; one that would give a
// MAC a second live lease fails too; either way nothing is written.
func (s *Store) CommitLeases(ctx context.Context, writes []dhcp.LeaseWrite) error {
	if len(writes) == 0 {
		return nil
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		// The first attempt goes on what this instance saw last; the
		// next ones read from etcd.
		done, err := s.commitLeases(ctx, writes, attempt == 0)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("commit leases: lost to concurrent writes %d times: %w", maxAttempts, dhcp.ErrAddressTaken)
}

func (s *Store) commitLeases(ctx context.Context, writes []dhcp.LeaseWrite, recalled bool) (committed bool, err error) {
	st := &leaseState{rev: map[string]int64{}, leases: map[netip.Addr]*leaseRecord{}, macs: map[string]string{}}
	known := map[string][]byte{} // every value read or recalled
	read := func(keys []string) (map[string][]byte, error) {
		values := map[string][]byte{}
		if recalled {
			s.seen.recall(st, keys, values)
		} else {
			var err error
			if values, err = s.readKeys(ctx, st, keys); err != nil {
				return nil, err
			}
		}
		for k, v := range values {
			known[k] = v
		}
		return values, nil
	}
	// First read: the addresses and MACs written.
	var keys []string
	for _, w := range writes {
		keys = append(keys, s.leaseKey(w.Lease.IP), s.leaseMACKey(w.Lease.MAC))
	}
	values, err := read(keys)
	if err != nil {
		return false, err
	}
	for _, w := range writes {
		ip, mac := w.Lease.IP, w.Lease.MAC
		if _, ok := st.leases[ip]; !ok {
			st.leases[ip] = nil
			if v, ok := values[s.leaseKey(ip)]; ok {
				r := new(leaseRecord)
				if err := json.Unmarshal(v, r); err != nil {
					return false, fmt.Errorf("decode lease on %s: %w", ip, err)
				}
				st.leases[ip] = r
			}
		}
		if _, ok := st.macs[mac]; !ok {
			st.macs[mac] = string(values[s.leaseMACKey(mac)])
		}
	}
	// Second read: the MAC keys of the leases the batch replaces.
	keys = keys[:0]
	for _, r := range st.leases {
		if r != nil {
			keys = append(keys, s.leaseMACKey(r.MAC))
		}
	}
	values, err = read(keys)
	if err != nil {
		return false, err
	}
	for _, r := range st.leases {
		if r != nil {
			if _, ok := st.macs[r.MAC]; !ok {
				st.macs[r.MAC] = string(values[s.leaseMACKey(r.MAC)])
			}
		}
	}

	// Apply the batch to what was read.
	now := s.now().Unix()
	touched := map[string]bool{}
	for _, w := range writes {
		l := w.Lease
		ipText := l.IP.String()
		cur := st.leases[l.IP]
		if w.Delete {
			if cur != nil && cur.MAC == l.MAC {
				st.leases[l.IP] = nil
				touched[s.leaseKey(l.IP)] = true
				if st.macs[l.MAC] == ipText {
					st.macs[l.MAC] = ""
					touched[s.leaseMACKey(l.MAC)] = true
				}
			}
			continue
		}
		if cur != nil && cur.MAC != l.MAC && holds(cur, now) {
			if recalled {
				return false, nil // refused on what was seen: read and decide again
			}
			return false, fmt.Errorf("write lease %s of %s: %s holds it (%s) until %s: %w",
				l.IP, l.MAC, cur.MAC, cur.State, time.Unix(cur.Expires, 0).UTC().Format(time.RFC3339), dhcp.ErrAddressTaken)
		}
		if cur != nil && st.macs[cur.MAC] == ipText {
			st.macs[cur.MAC] = ""
			touched[s.leaseMACKey(cur.MAC)] = true
		}
		st.leases[l.IP] = &leaseRecord{MAC: l.MAC, Hostname: l.Hostname, Expires: l.Expires.Unix(), State: string(l.State)}
		touched[s.leaseKey(l.IP)] = true
		if l.State == dhcp.LeaseDeclined {
			continue
		}
		if other := st.macs[l.MAC]; other != "" && other != ipText {
			if recalled {
				return false, nil
			}
			return false, fmt.Errorf("write lease %s of %s: the MAC already has a lease on %s", l.IP, l.MAC, other)
		}
		st.macs[l.MAC] = ipText
		touched[s.leaseMACKey(l.MAC)] = true
	}

	cmps := make([]clientv3.Cmp, 0, len(st.rev))
	for k, rev := range st.rev {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	ops := make([]clientv3.Op, 0, len(touched))
	written := make(map[string][]byte, len(touched)) // nil: deleted
	for ip, r := range st.leases {
		key := s.leaseKey(ip)
		if !touched[key] {
			continue
		}
		if r == nil {
			ops = append(ops, clientv3.OpDelete(key))
			written[key] = nil
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			return false, fmt.Errorf("encode lease on %s: %w", ip, err)
		}
		ops = append(ops, clientv3.OpPut(key, string(b)))
		written[key] = b
	}
	for mac, ip := range st.macs {
		key := s.leaseMACKey(mac)
		if !touched[key] {
			continue
		}
		if ip == "" {
			ops = append(ops, clientv3.OpDelete(key))
			written[key] = nil
		} else {
			ops = append(ops, clientv3.OpPut(key, ip))
			written[key] = []byte(ip)
		}
	}
	if len(cmps) > s.cfg.MaxTxnOps || len(ops) > s.cfg.MaxTxnOps {
		return false, fmt.Errorf("commit leases: a batch of %d writes touches %d keys, more than one etcd transaction holds (%d): %w",
			len(writes), len(cmps), s.cfg.MaxTxnOps, errBatchTooLarge)
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		s.seen.forget(st.rev)
		return false, fmt.Errorf("commit leases: %w", err)
	}
	if !resp.Succeeded {
		s.seen.forget(st.rev)
		return false, nil
	}
	after := make(map[string]int64, len(st.rev))
	for key, rev := range st.rev {
		if v, ok := written[key]; ok {
			after[key], known[key] = resp.Header.Revision, v
			continue
		}
		after[key] = rev
	}
	s.seen.remember(after, known)
	return true, nil
}

// errBatchTooLarge is returned for a lease batch that does not fit one
// etcd transaction: the allocator then commits its writes one by one
// (configure dhcp.AllocatorConfig.MaxBatch at most MaxLeaseBatch).
var errBatchTooLarge = errors.New("lease batch too large for one etcd transaction")

// MaxLeaseBatch is the largest allocator batch (dhcp.AllocatorConfig.
// MaxBatch) whose transactions always fit Config.MaxTxnOps: a bound lease
// that moves a MAC touches at most four keys, each read, compared and
// written (32 at etcd's default 128).
func (s *Store) MaxLeaseBatch() int { return max(s.cfg.MaxTxnOps/4, 1) }

// holds reports whether a stored lease keeps its address from other MACs
// at now (Unix seconds): bound, offered or declined, and not expired.
func holds(r *leaseRecord, now int64) bool {
	switch dhcp.LeaseState(r.State) {
	case dhcp.LeaseBound, dhcp.LeaseOffered, dhcp.LeaseDeclined:
		return r.Expires > now
	}
	return false
}
