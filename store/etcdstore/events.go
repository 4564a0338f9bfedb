package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/matchbox"
	"matchbox/store"
)

// eventsPerTxn bounds the events of one etcd transaction: each is one
// operation, and each of its machines one condition, within
// Config.MaxTxnOps (100 at etcd's default 128).
func (s *Store) eventsPerTxn() int { return max(s.cfg.MaxTxnOps*100/DefaultMaxTxnOps, 1) }

// eventRetention keeps timelines bounded in etcd, which is no log store
// (its default quota is 2 GiB): every event is written under an etcd
// lease that outlives it by at least Config.EventRetention (one lease per
// rotation period, so a boot storm adds keys, not leases), and a machine
// whose timeline grew by a quarter of Config.EventsPerMachine through this
// instance is trimmed to its newest EventsPerMachine events.
type eventRetention struct {
	mu      sync.Mutex
	lease   clientv3.LeaseID
	granted time.Time
	grown   map[string]int // machine → events appended since its last trim
}

// rotation is how long one event lease takes new events.
func (s *Store) rotation() time.Duration { return max(s.cfg.EventRetention/8, time.Second) }

// eventLease returns the lease new events are written under, granting a
// new one when the current one is older than a rotation period (or
// refused, stale).
func (s *Store) eventLease(ctx context.Context, stale clientv3.LeaseID) (clientv3.LeaseID, error) {
	r := &s.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != 0 && r.lease != stale && s.now().Sub(r.granted) < s.rotation() {
		return r.lease, nil
	}
	ttl := int64((s.cfg.EventRetention + s.rotation()) / time.Second)
	resp, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("grant the lease of timeline events: %w", err)
	}
	r.lease, r.granted = resp.ID, s.now()
	return r.lease, nil
}

// grew counts n events appended to a machine's timeline and reports
// whether it is due for a trim.
func (s *Store) grew(id string, n int) bool {
	r := &s.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grown == nil {
		r.grown = map[string]int{}
	}
	r.grown[id] += n
	if r.grown[id] < max(s.cfg.EventsPerMachine/4, 1) {
		return false
	}
	delete(r.grown, id)
	return true
}

// trimEvents deletes a machine's oldest events beyond EventsPerMachine
// (keys order events by time).
func (s *Store) trimEvents(ctx context.Context, id string) error {
	pfx := s.eventPrefix(id)
	resp, err := s.kv.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count events of machine %q: %w", id, err)
	}
	excess := resp.Count - int64(s.cfg.EventsPerMachine)
	if excess <= 0 {
		return nil
	}
	old, err := s.kv.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(excess),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil || len(old.Kvs) == 0 {
		return err
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := s.kv.Delete(ctx, pfx, clientv3.WithRange(last+"\x00")); err != nil {
		return fmt.Errorf("trim events of machine %q: %w", id, err)
	}
	return nil
}

// eventRecord is one timeline event under events/<machine>/<key>. Its id
// (matchbox.Event.ID) is the etcd revision that created it shifted left by
// 12 bits plus its position N in its transaction: ids order events as
// they were committed, across instances.
type eventRecord struct {
	N      int64          `json:"n"`
	At     time.Time      `json:"at"`
	Type   string         `json:"type"`
	Detail map[string]any `json:"detail,omitempty"`
}

func (s *Store) eventPrefix(id string) string { return s.root + "events/" + id + "/" }

// AppendEvents appends events to the timelines of machines that exist,
// named by MachineID or by a MAC a machine owns; an event of a MAC no
// machine owns fails the call with store.ErrNotFound.
func (s *Store) AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return s.appendEvents(ctx, evs, false)
}

// DiscoverAndAppendEvents is AppendEvents creating a discovered machine
// (EnsureMachine) for each MAC no machine owns, and recording the UUID a
// known machine reports for the first time.
func (s *Store) DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return s.appendEvents(ctx, evs, true)
}

// appendEvents resolves the events' machines, then writes the events in
// transactions of at most eventsPerTxn events, each on the condition that
// its machines still exist.
func (s *Store) appendEvents(ctx context.Context, evs []matchbox.BootEvent, discover bool) error {
	if len(evs) == 0 {
		return nil
	}
	ids := make([]string, len(evs))
	resolved := map[string]string{}
	var ensured map[discovery]string
	if discover {
		var err error
		if ensured, err = s.ensureMachines(ctx, evs); err != nil {
			return err
		}
	}
	for i := range evs {
		ev := &evs[i]
		id := ev.MachineID
		if id == "" {
			if ev.MAC == "" {
				return fmt.Errorf("event %s names no machine and no MAC", ev.Type)
			}
			uuid := matchbox.MachineUUID(ev.UUID)
			known, ok := resolved[ev.MAC]
			switch {
			case ok && uuid == "":
				id = known
			case discover:
				m, inMemory := s.LookupMachine(ev.MAC, "")
				if inMemory && (uuid == "" || m.UUID != "") {
					id = m.ID
					break
				}
				if id = ensured[discovery{ev.MAC, uuid}]; id != "" {
					break
				}
				// Resolved by the index before, gone from it since (a
				// concurrent delete): ensured now.
				var err error
				if id, _, err = s.EnsureMachine(ctx, ev.MAC, uuid); err != nil {
					return fmt.Errorf("%s event of MAC %s: %w", ev.Type, ev.MAC, err)
				}
			default:
				if m, inMemory := s.LookupMachine(ev.MAC, ""); inMemory {
					id = m.ID
					break
				}
				var err error
				if id, err = s.MachineIDByMAC(ctx, ev.MAC); err != nil {
					return fmt.Errorf("%s event of MAC %s: no machine has the MAC: %w", ev.Type, ev.MAC, err)
				}
			}
			resolved[ev.MAC] = id
		}
		ids[i] = id
	}
	suffix, err := randomHex(6)
	if err != nil {
		return err
	}
	lease, err := s.eventLease(ctx, 0)
	if err != nil {
		return err
	}
	perMachine := map[string]int{}
	perTxn := s.eventsPerTxn()
	for start := 0; start < len(evs); start += perTxn {
		end := min(start+perTxn, len(evs))
		var cmps []clientv3.Cmp
		seen := map[string]bool{}
		ops := make([]clientv3.Op, 0, end-start)
		for i := start; i < end; i++ {
			ev := &evs[i]
			if !seen[ids[i]] {
				seen[ids[i]] = true
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.machineKey(ids[i])), ">", 0))
			}
			at := ev.At
			if at.IsZero() {
				at = s.now()
			}
			body, err := json.Marshal(eventRecord{N: int64(i - start), At: at.UTC(), Type: ev.Type, Detail: ev.MergedDetail()})
			if err != nil {
				return fmt.Errorf("encode %s event of machine %q: %w", ev.Type, ids[i], err)
			}
			key := fmt.Sprintf("%s%020d-%s-%03d", s.eventPrefix(ids[i]), at.UnixNano(), suffix, i)
			ops = append(ops, clientv3.OpPut(key, string(body), clientv3.WithLease(lease)))
			perMachine[ids[i]]++
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease expired or was revoked: take a fresh one.
			if lease, err = s.eventLease(ctx, lease); err != nil {
				return err
			}
			for i := range ops {
				ops[i] = clientv3.OpPut(string(ops[i].KeyBytes()), string(ops[i].ValueBytes()), clientv3.WithLease(lease))
			}
			resp, err = s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		}
		if err != nil {
			return fmt.Errorf("append events: %w", err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("append events: a machine of the batch was deleted: %w", store.ErrNotFound)
		}
	}
	if err := s.recordServed(ctx, matchbox.LastServed(evs, ids)); err != nil {
		return err
	}
	for id, n := range perMachine {
		if s.grew(id, n) {
			if err := s.trimEvents(ctx, id); err != nil {
				s.log.Warn("trimming a timeline failed", "machine", id, "err", err)
			}
		}
	}
	return nil
}

// discovery is a MAC, and the UUID it came with, whose machine a batch of
// events must ensure.
type discovery struct{ mac, uuid string }

// ensureParallel bounds the machines a batch ensures one by one at once.
const ensureParallel = 16

// createChunk is the most new MACs one creating transaction takes: it
// reads two keys per MAC, and writes two keys on two conditions per MAC:
// a quarter of Config.MaxTxnOps, 32 at etcd's default 128 (etcd 3.4 at
// that default refused 64 MACs, 128 conditions and 128 writes, and took
// 48).
func (s *Store) createChunk() int { return max(s.cfg.MaxTxnOps/4, 1) }

// ensureMachines ensures the machine of every MAC of evs that names no
// machine and that the index does not resolve (as appendEvents would, one
// by one), and returns their ids. A boot storm's first requests bring
// batches of new MACs: those no machine owns, whose machine id is free,
// are created together, createChunk in one etcd transaction on the
// condition that neither their MAC keys nor their machine keys exist
// (compare-and-swap, as EnsureMachine's), then indexed with one wait for
// the watch. The others (a MAC owned already, an id taken, a chunk that
// lost a race with another instance) are ensured one by one, at most
// ensureParallel at a time.
func (s *Store) ensureMachines(ctx context.Context, evs []matchbox.BootEvent) (map[discovery]string, error) {
	var todo []discovery
	seen := map[discovery]bool{}
	for i := range evs {
		ev := &evs[i]
		if ev.MachineID != "" || ev.MAC == "" {
			continue
		}
		d := discovery{ev.MAC, matchbox.MachineUUID(ev.UUID)}
		if seen[d] {
			continue
		}
		seen[d] = true
		if m, ok := s.LookupMachine(d.mac, ""); ok && (d.uuid == "" || m.UUID != "") {
			continue
		}
		todo = append(todo, d)
	}
	out := make(map[discovery]string, len(todo))
	if len(todo) == 0 {
		return out, nil
	}
	var rest []discovery
	for _, chunk := range chunkByMAC(todo, s.createChunk()) {
		left, err := s.createMachines(ctx, chunk, out)
		if err != nil {
			return nil, err
		}
		rest = append(rest, left...)
	}
	if len(rest) == 0 {
		return out, nil
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, ensureParallel)
	)
	for _, d := range rest {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			id, _, err := s.EnsureMachine(ctx, d.mac, d.uuid)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("event of MAC %s: %w", d.mac, err)
				}
				return
			}
			out[d] = id
		})
	}
	wg.Wait()
	return out, firstErr
}

// chunkByMAC splits ds into chunks of at most n distinct MACs, keeping the
// discoveries of one MAC (with and without a UUID) in one chunk.
func chunkByMAC(ds []discovery, n int) [][]discovery {
	byMAC := map[string][]discovery{}
	var order []string
	for _, d := range ds {
		if _, ok := byMAC[d.mac]; !ok {
			order = append(order, d.mac)
		}
		byMAC[d.mac] = append(byMAC[d.mac], d)
	}
	var chunks [][]discovery
	for start := 0; start < len(order); start += n {
		var chunk []discovery
		for _, mac := range order[start:min(start+n, len(order))] {
			chunk = append(chunk, byMAC[mac]...)
		}
		chunks = append(chunks, chunk)
	}
	return chunks
}

// createMachines creates, in one transaction, a discovered machine for
// each MAC of ds that no machine owns and whose machine id
// (store.MachineIDFromMAC) is free, with the first UUID ds gives the MAC,
// records the ids of its discoveries in out, and returns once this
// instance's index holds them. It returns the discoveries it left to
// EnsureMachine: MACs owned already or whose id is taken, and all of ds
// when another writer created one of its keys between the read and the
// commit.
func (s *Store) createMachines(ctx context.Context, ds []discovery, out map[discovery]string) (rest []discovery, err error) {
	var macs []string
	uuids := map[string]string{}
	for _, d := range ds {
		if _, ok := uuids[d.mac]; !ok {
			macs = append(macs, d.mac)
		}
		if uuids[d.mac] == "" {
			uuids[d.mac] = d.uuid
		}
	}
	reads := make([]clientv3.Op, 0, 2*len(macs))
	for _, mac := range macs {
		reads = append(reads, clientv3.OpGet(s.macKey(mac), clientv3.WithCountOnly()), clientv3.OpGet(s.machineKey(store.MachineIDFromMAC(mac)), clientv3.WithCountOnly()))
	}
	resp, err := s.kv.Txn(ctx).Then(reads...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read the machines of %d new MACs: %w", len(macs), err)
	}
	fresh := map[string]bool{}
	recs := map[string]*matchbox.Machine{}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	now := s.now().UTC()
	for i, mac := range macs {
		if resp.Responses[2*i].GetResponseRange().Count > 0 || resp.Responses[2*i+1].GetResponseRange().Count > 0 {
			continue
		}
		id := store.MachineIDFromMAC(mac)
		rec := machineRecord{Version: 1, Machine: matchbox.Machine{
			ID: id, UUID: uuids[mac], MACs: []string{mac}, State: matchbox.StateDiscovered, CreatedAt: now, UpdatedAt: now,
		}}
		body, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode machine %q: %w", id, err)
		}
		recs[id] = rec.indexEntry()
		fresh[mac] = true
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(s.macKey(mac)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(s.machineKey(id)), "=", 0))
		ops = append(ops, clientv3.OpPut(s.macKey(mac), id), clientv3.OpPut(s.machineKey(id), string(body)))
	}
	for _, d := range ds {
		if !fresh[d.mac] {
			rest = append(rest, d)
		}
	}
	if len(ops) == 0 {
		return rest, nil
	}
	committed, err := s.commitMachines(ctx, cmps, ops, recs, fmt.Sprintf("create the machines of %d new MACs", len(fresh)))
	if err != nil {
		return nil, err
	}
	if !committed {
		return ds, nil // another writer came first: one by one
	}
	for _, d := range ds {
		if fresh[d.mac] {
			out[d] = store.MachineIDFromMAC(d.mac)
		}
	}
	return rest, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key suffix: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Events returns a machine's timeline, oldest first: ordered by time, then
// id, as the SQLite store orders it (a request's event may be written after
// the action it led to); f.Written orders it by id, the order of writing.
// The cursor f.AfterID names the last event seen, in either order.
func (s *Store) Events(ctx context.Context, machineID string, f store.EventFilter) ([]matchbox.Event, error) {
	return s.events(ctx, s.eventPrefix(machineID), f, !f.Written)
}

// FleetEvents returns the events of every machine in the order they were
// written (by id), a cursor over everything written.
func (s *Store) FleetEvents(ctx context.Context, f store.EventFilter) ([]matchbox.Event, error) {
	return s.events(ctx, s.root+"events/", f, false)
}

func (s *Store) events(ctx context.Context, pfx string, f store.EventFilter, byTime bool) ([]matchbox.Event, error) {
	resp, err := s.kv.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	all := make([]matchbox.Event, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r eventRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode event %s: %w", kv.Key, err)
		}
		machine, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), s.root+"events/"), "/")
		all = append(all, matchbox.Event{ID: kv.CreateRevision<<12 | r.N, MachineID: machine, At: r.At, Type: r.Type, Detail: r.Detail})
	}
	before := func(a, b *matchbox.Event) bool { return a.ID < b.ID }
	if byTime {
		before = func(a, b *matchbox.Event) bool {
			if c := a.At.Compare(b.At); c != 0 {
				return c < 0
			}
			return a.ID < b.ID
		}
	}
	sort.Slice(all, func(i, j int) bool { return before(&all[i], &all[j]) })
	// The cursor: events after the one named AfterID in this order; when
	// it is gone (trimmed, expired), those of a greater id.
	after := func(e *matchbox.Event) bool { return e.ID > f.AfterID }
	if byTime && f.AfterID > 0 {
		for i := range all {
			if all[i].ID == f.AfterID {
				cur := all[i]
				after = func(e *matchbox.Event) bool { return before(&cur, e) }
				break
			}
		}
	}
	out := all[:0]
	for i := range all {
		e := &all[i]
		if !after(e) || !typeMatches(e.Type, f.Type) || (!f.Since.IsZero() && e.At.Before(f.Since)) {
			continue
		}
		out = append(out, *e)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	if len(out) > limit {
		if f.Newest {
			out = out[len(out)-limit:]
		} else {
			out = out[:limit]
		}
	}
	return out, nil
}

func typeMatches(typ, want string) bool {
	if want == "" {
		return true
	}
	if strings.HasSuffix(want, ".") {
		return strings.HasPrefix(typ, want)
	}
	return typ == want
}

// recordServed records, on each machine of served whose record says
// otherwise, the group and profile it was last served (the record's
// version stays: it is no change a client made). The machines are
// updated together, half of Config.MaxTxnOps in one transaction on the
// condition that none changed since read (a boot storm's first answers
// served a batch of new machines, which one by one made each first boot
// wait for all before it); a chunk that lost a race is updated one by
// one.
func (s *Store) recordServed(ctx context.Context, served map[string]matchbox.Outcome) error {
	var ids []string
	for id, o := range served {
		if m, ok := s.LookupMachineByID(id); ok && m.ServedGroup == o.Group && m.ServedProfile == o.Profile {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	per := max(s.cfg.MaxTxnOps/2, 1)
	for start := 0; start < len(ids); start += per {
		chunk := ids[start:min(start+per, len(ids))]
		done, err := s.recordServedTogether(ctx, chunk, served)
		if err != nil {
			return err
		}
		if done {
			continue
		}
		for _, id := range chunk {
			if err := s.recordServedOne(ctx, id, served[id]); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordServedTogether updates the served group and profile of machines
// ids in one transaction; done is false when one of them changed between
// the read and the commit, and nothing was written.
func (s *Store) recordServedTogether(ctx context.Context, ids []string, served map[string]matchbox.Outcome) (done bool, err error) {
	reads := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		reads[i] = clientv3.OpGet(s.machineKey(id))
	}
	resp, err := s.kv.Txn(ctx).Then(reads...).Commit()
	if err != nil {
		return false, fmt.Errorf("read %d served machines: %w", len(ids), err)
	}
	recs := map[string]*matchbox.Machine{}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for i, id := range ids {
		kvs := resp.Responses[i].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // deleted meanwhile
		}
		var r machineRecord
		if err := json.Unmarshal(kvs[0].Value, &r); err != nil {
			return false, fmt.Errorf("decode machine %q: %w", id, err)
		}
		o := served[id]
		if r.Machine.ServedGroup == o.Group && r.Machine.ServedProfile == o.Profile {
			continue
		}
		r.Machine.ServedGroup, r.Machine.ServedProfile = o.Group, o.Profile
		body, err := json.Marshal(r)
		if err != nil {
			return false, fmt.Errorf("encode machine %q: %w", id, err)
		}
		recs[id] = r.indexEntry()
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.machineKey(id)), "=", kvs[0].ModRevision))
		ops = append(ops, clientv3.OpPut(s.machineKey(id), string(body)))
	}
	if len(ops) == 0 {
		return true, nil
	}
	return s.commitMachines(ctx, cmps, ops, recs, fmt.Sprintf("record what %d machines were served", len(ops)))
}

// commitMachines commits machine writes on their conditions and, when
// they held, puts recs (the machine records the writes store, by id) into
// this instance's machine index at the commit's revision; committed is
// false when a condition failed and nothing was written. what names the
// write in errors.
func (s *Store) commitMachines(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op, recs map[string]*matchbox.Machine, what string) (committed bool, err error) {
	commit, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	if !commit.Succeeded {
		return false, nil
	}
	s.applyCommitted(commit.Header.Revision, recs)
	return true, nil
}

// recordServedOne records what machine id was served, alone.
func (s *Store) recordServedOne(ctx context.Context, id string, o matchbox.Outcome) error {
	err := s.updateMachine(ctx, id, nil, func(v *machineView) (*machineRecord, []clientv3.Op, error) {
		if v.cur == nil {
			return nil, nil, errNoWrite // deleted meanwhile
		}
		if v.cur.Machine.ServedGroup == o.Group && v.cur.Machine.ServedProfile == o.Profile {
			return nil, nil, errNoWrite
		}
		next := v.cur.clone()
		next.Machine.ServedGroup, next.Machine.ServedProfile = o.Group, o.Profile
		return next, nil, nil
	})
	if err != nil {
		return fmt.Errorf("record what machine %q was served: %w", id, err)
	}
	return nil
}
