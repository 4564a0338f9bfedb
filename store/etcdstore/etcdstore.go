// Package etcdstore keeps matchbox's catalog in etcd, shared by several
// matchbox instances. Each catalog write is one etcd transaction, validated
// whole (matchbox.Build) before it commits; every instance keeps its own
// immutable snapshot, derived from an etcd watch of the catalog's keys
// (matchbox.Snapshot.Apply of each revision's changed objects).
//
// Keys, under /<prefix>/:
//
//	catalog/<kind>/<id>  one object: {"version", "source", "spec"}
//	catalog-rev          written by every catalog transaction
//
// A write reads the whole catalog, runs its function against that state in
// memory, builds and validates the resulting snapshot, then commits its
// changes in one etcd transaction on the condition that catalog-rev has not
// moved since the read: concurrent writers (on any instance) serialise on
// it, and a writer that lost re-reads and runs its function again.
//
//	machines/<id>        a machine: record, sealed BMC record, last inventory
//	macs/<mac>           the id of the machine owning a MAC
//	inventory/<id>/<seq> a machine's inventory history
//	events/<id>/<key>    a machine's timeline
//
// Machine writes are transactions on the condition that the machine's key
// (and the MAC keys they take) did not change since they were read:
// compare-and-swap, so that a state transition from given states commits
// on one instance only. Every instance keeps an in-memory index of the
// machines (by id, MAC and UUID) from a watch of machines/.
//
// Leases: see leases.go.
package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/audit"
	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/internal/machineindex"
)

// maxAttempts bounds how often a catalog write is retried after losing to
// a concurrent one.
const maxAttempts = 16

// Config configures a Store.
type Config struct {
	// Client is the etcd client; the Store does not close it.
	Client *clientv3.Client
	// Prefix is the key prefix of this installation, without leading or
	// trailing slash ("matchbox").
	Prefix string
	// ParseFact parses hardware-fact terms of groups; nil refuses groups
	// that have any.
	ParseFact matchbox.FactParser
	// Logger receives store logs; nil discards them.
	Logger *slog.Logger
	// EventRetention is how long timeline events are kept at least: each
	// is written under an etcd lease that expires after it and a rotation
	// period (default 7 days).
	EventRetention time.Duration
	// EventsPerMachine bounds a machine's timeline: older events beyond
	// it are deleted (default 256).
	EventsPerMachine int
	// RequestTimeout bounds every etcd request (default
	// DefaultRequestTimeout); a request that times out makes the store
	// degraded (Health).
	RequestTimeout time.Duration
	// CheckInterval is how often the store reads etcd to notice that it
	// cannot be reached even when nothing writes (default 1s).
	CheckInterval time.Duration
	// MaxTxnOps is the most conditions or operations etcd takes in one
	// transaction: its --max-txn-ops (default DefaultMaxTxnOps, etcd's
	// own default). Lease batches, machines created together and events
	// are split into transactions within it; a cluster configured for
	// more lets a busy DHCP server commit more leases per transaction.
	MaxTxnOps int
}

// DefaultMaxTxnOps is etcd's default --max-txn-ops.
const DefaultMaxTxnOps = 128

// Store is matchbox's state on etcd. It implements store.Backend and is
// safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	kv      *guardedKV // cli's key-value API, bounded and classified
	health  store.Health
	root    string // "/<prefix>/"
	catalog string // "/<prefix>/catalog/"
	revKey  string // "/<prefix>/catalog-rev"
	now     func() time.Time

	snap           atomic.Pointer[matchbox.Snapshot]
	catalogApplied *applied // etcd revision the snapshot reflects
	// base is the snapshot of the catalog at one catalog-rev: a writer
	// that read the catalog at that catalog-rev derives its snapshot
	// from it instead of building one.
	base atomic.Pointer[baseSnapshot]

	index           *machineindex.Index
	machinesApplied *applied // etcd revision the index reflects
	ahead           ahead    // this instance's writes indexed before the watch brought them

	retention eventRetention
	seen      leaseKeys // lease keys as last read or written by this instance

	cancel       context.CancelFunc
	done         chan struct{} // closed when the catalog watch ends
	machinesDone chan struct{} // closed when the machine watch ends
	checkDone    chan struct{} // closed when check ends
}

var _ store.Backend = (*Store)(nil)

// baseSnapshot is a snapshot and the catalog-rev mod revision of the
// catalog it was made from.
type baseSnapshot struct {
	snap      *matchbox.Snapshot
	revKeyMod int64
}

// maxAppliedChanges is how many changed objects a revision or a write may
// hold for its snapshot to be derived from the previous one; a larger one
// (an import) builds the snapshot from the whole catalog.
const maxAppliedChanges = 64

// record is one object's stored value.
type record struct {
	Version int64  `json:"version"`
	Source  string `json:"source,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Spec    string `json:"spec"`
}

// Open reads the catalog, builds the first snapshot and starts watching
// for changes.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("open etcd store: no client")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix == "" {
		return nil, errors.New("open etcd store: empty key prefix")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 7 * 24 * time.Hour
	}
	if cfg.EventsPerMachine <= 0 {
		cfg.EventsPerMachine = 256
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.MaxTxnOps < 8 {
		return nil, fmt.Errorf("etcd store: MaxTxnOps %d: etcd must take at least 8 operations per transaction", cfg.MaxTxnOps)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	s := &Store{
		cfg: cfg, log: cfg.Logger, cli: cfg.Client,
		root:    "/" + prefix + "/",
		catalog: "/" + prefix + "/catalog/",
		revKey:  "/" + prefix + "/catalog-rev",
		now:     time.Now,
		done:    make(chan struct{}),

		machinesDone: make(chan struct{}),
		checkDone:    make(chan struct{}),
	}
	s.kv = &guardedKV{kv: cfg.Client.KV, timeout: cfg.RequestTimeout, health: &s.health,
		markers: &requestMarkers{lease: cfg.Client.Lease, prefix: s.root + "requests/"}}
	state, err := s.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	snap, err := matchbox.Build(state.catalog(), cfg.ParseFact)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: stored catalog is invalid: %w", err)
	}
	s.snap.Store(snap)
	s.base.Store(&baseSnapshot{snap: snap, revKeyMod: state.revKeyMod})
	s.catalogApplied = newApplied(state.rev)
	ms, mrev, err := s.loadMachines(ctx)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	s.index = newIndex(ms)
	s.machinesApplied = newApplied(mrev)
	s.ahead.writes = map[string]aheadWrite{}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(wctx, state)
	go s.watchMachines(wctx, mrev)
	go s.check(wctx)
	return s, nil
}

// Close stops the watches. It does not close the client.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	<-s.machinesDone
	<-s.checkDone
	return nil
}

// Ping checks that etcd answers a linearizable read (it has a quorum); a
// read that does not answer before ctx's deadline is store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	err := s.kv.do(ctx, func(ctx context.Context) error {
		_, err := s.kv.kv.Get(ctx, s.revKey)
		return err
	})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("ping etcd: %w: no answer in time: %w", store.ErrUnavailable, err)
		}
		return fmt.Errorf("ping etcd: %w", classify(ctx, err))
	}
	return nil
}

// pause waits d or until ctx is done, between attempts to read etcd again.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Snapshot returns the current immutable catalog snapshot.
func (s *Store) Snapshot() *matchbox.Snapshot { return s.snap.Load() }

// state is the catalog as read at one etcd revision.
type state struct {
	rev       int64             // revision of the read
	revKeyMod int64             // mod revision of catalog-rev, 0 when absent
	recs      map[string]record // key (kind/id) → record
}

func (s *Store) read(ctx context.Context) (*state, error) {
	resp, err := s.kv.Get(ctx, s.catalog, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	st := &state{rev: resp.Header.Revision, recs: make(map[string]record, len(resp.Kvs))}
	for _, kv := range resp.Kvs {
		var r record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		st.recs[strings.TrimPrefix(string(kv.Key), s.catalog)] = r
	}
	// catalog-rev at the same revision as the objects.
	rresp, err := s.kv.Get(ctx, s.revKey, clientv3.WithRev(st.rev))
	if err != nil {
		return nil, fmt.Errorf("read catalog revision: %w", err)
	}
	if len(rresp.Kvs) > 0 {
		st.revKeyMod = rresp.Kvs[0].ModRevision
	}
	return st, nil
}

// catalog decodes a state into a matchbox.Catalog, each kind ordered by id.
func (st *state) catalog() matchbox.Catalog {
	var c matchbox.Catalog
	keys := make([]string, 0, len(st.recs))
	for k := range st.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o, err := decode(k, st.recs[k])
		if err != nil {
			// Written by this package after validation: cannot happen
			// unless someone else wrote under the prefix.
			continue
		}
		switch o.Kind {
		case matchbox.KindProfile:
			c.Profiles = append(c.Profiles, *o.Profile)
		case matchbox.KindGroup:
			c.Groups = append(c.Groups, *o.Group)
		default:
			c.Templates = append(c.Templates, *o.Template)
		}
	}
	return c
}

func objKey(kind matchbox.Kind, id string) string { return string(kind) + "/" + id }

func checkKind(kind matchbox.Kind) error {
	for _, k := range matchbox.Kinds() {
		if k == kind {
			return nil
		}
	}
	return fmt.Errorf("unknown kind %q", kind)
}

// decode turns a stored record back into an object.
func decode(key string, r record) (*store.Object, error) {
	kind, id, ok := strings.Cut(key, "/")
	if !ok {
		return nil, fmt.Errorf("catalog key %q: no kind", key)
	}
	o := &store.Object{Kind: matchbox.Kind(kind), ID: id, Version: r.Version, Source: r.Source, Scope: r.Scope}
	var err error
	switch o.Kind {
	case matchbox.KindProfile:
		o.Profile = new(matchbox.Profile)
		err = json.Unmarshal([]byte(r.Spec), o.Profile)
	case matchbox.KindGroup:
		o.Group = new(matchbox.Group)
		err = json.Unmarshal([]byte(r.Spec), o.Group)
	case matchbox.TemplateIgnition, matchbox.TemplateGeneric:
		o.Template = &matchbox.Template{Kind: o.Kind, Name: id, Content: r.Spec}
	default:
		return nil, fmt.Errorf("catalog key %q: unknown kind", key)
	}
	if err != nil {
		return nil, fmt.Errorf("decode stored %s %q: %w", kind, id, err)
	}
	return o, nil
}

// tx is a store.CatalogTx over a state read from etcd: writes change the
// state in memory and are remembered for the commit.
type tx struct {
	st       *state
	dirty    map[string]bool
	readOnly bool
	// audit is the records of the transaction's changes, committed with
	// them.
	audit []audit.Record
}

func (c *tx) audited(action string, kind matchbox.Kind, id string, before, after int64) {
	c.audit = append(c.audit, audit.Record{Action: action, Kind: string(kind), Object: id, VersionBefore: before, VersionAfter: after})
}

func (c *tx) Get(kind matchbox.Kind, id string) (*store.Object, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	r, ok := c.st.recs[objKey(kind, id)]
	if !ok {
		return nil, fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
	}
	return decode(objKey(kind, id), r)
}

func (c *tx) List(kind matchbox.Kind) ([]*store.Object, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	pfx := string(kind) + "/"
	var keys []string
	for k := range c.st.recs {
		if strings.HasPrefix(k, pfx) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]*store.Object, 0, len(keys))
	for _, k := range keys {
		o, err := decode(k, c.st.recs[k])
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (c *tx) Put(obj *store.Object, ifVersion int64) (int64, error) {
	if c.readOnly {
		return 0, errors.New("write in a read transaction")
	}
	id, spec, err := obj.Encode()
	if err != nil {
		return 0, err
	}
	if obj.Template != nil {
		if err := store.CheckTemplate(obj); err != nil {
			return 0, err
		}
	}
	k := objKey(obj.Kind, id)
	cur, exists := c.st.recs[k]
	switch {
	case !exists && ifVersion > 0:
		return 0, fmt.Errorf("%s %q: %w", obj.Kind, id, store.ErrNotFound)
	case exists && ifVersion == -1:
		return 0, fmt.Errorf("%s %q: %w", obj.Kind, id, store.ErrExists)
	case exists && ifVersion > 0 && ifVersion != cur.Version:
		return 0, fmt.Errorf("%s %q is at version %d, not %d: %w", obj.Kind, id, cur.Version, ifVersion, store.ErrVersionConflict)
	}
	v := cur.Version + 1 // 1 when new
	c.st.recs[k] = record{Version: v, Source: obj.Source, Scope: obj.Scope, Spec: spec}
	c.dirty[k] = true
	if exists {
		c.audited(audit.ActionUpdate, obj.Kind, id, cur.Version, v)
	} else {
		c.audited(audit.ActionCreate, obj.Kind, id, 0, v)
	}
	return v, nil
}

func (c *tx) Delete(kind matchbox.Kind, id string, ifVersion int64) error {
	if c.readOnly {
		return errors.New("write in a read transaction")
	}
	if err := checkKind(kind); err != nil {
		return err
	}
	k := objKey(kind, id)
	cur, exists := c.st.recs[k]
	if !exists {
		return fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
	}
	if ifVersion > 0 && ifVersion != cur.Version {
		return fmt.Errorf("%s %q: %w", kind, id, store.ErrVersionConflict)
	}
	delete(c.st.recs, k)
	c.dirty[k] = true
	c.audited(audit.ActionDelete, kind, id, cur.Version, 0)
	return nil
}

// ViewCatalog runs fn against the catalog as read at one etcd revision.
func (s *Store) ViewCatalog(ctx context.Context, fn func(c store.CatalogTx) error) error {
	st, err := s.read(ctx)
	if err != nil {
		return err
	}
	return fn(&tx{st: st, dirty: map[string]bool{}, readOnly: true})
}

// UpdateCatalog runs fn in one write transaction: see the package
// documentation. fn may run more than once.
func (s *Store) UpdateCatalog(ctx context.Context, fn func(c store.CatalogTx) error) (*matchbox.Snapshot, error) {
	return s.updateCatalog(ctx, fn, nil)
}

func (s *Store) updateCatalog(ctx context.Context, fn func(c store.CatalogTx) error, check func(before, after *matchbox.Snapshot) error) (*matchbox.Snapshot, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		st, err := s.read(ctx)
		if err != nil {
			return nil, err
		}
		// before is the snapshot of the catalog as read: the watch's when
		// it reflects the same catalog-rev, built otherwise.
		var before *matchbox.Snapshot
		if b := s.base.Load(); b != nil && b.revKeyMod == st.revKeyMod {
			before = b.snap
		} else if before, err = matchbox.Build(st.catalog(), s.cfg.ParseFact); err != nil {
			return nil, fmt.Errorf("stored catalog is invalid: %w", err)
		}
		revKeyMod := st.revKeyMod
		c := &tx{st: st, dirty: map[string]bool{}}
		if err := fn(c); err != nil {
			return nil, err
		}
		after, err := s.derive(before, st, c.dirty)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(before, after); err != nil {
				return nil, err
			}
		}
		if len(c.dirty) == 0 {
			return s.Snapshot(), nil
		}
		ops := make([]clientv3.Op, 0, len(c.dirty)+1)
		for k := range c.dirty {
			r, ok := st.recs[k]
			if !ok {
				ops = append(ops, clientv3.OpDelete(s.catalog+k))
				continue
			}
			b, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", k, err)
			}
			ops = append(ops, clientv3.OpPut(s.catalog+k, string(b)))
		}
		ops = append(ops, clientv3.OpPut(s.revKey, ""))
		resp, err := s.commitAudited(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.revKey), "=", revKeyMod)}, ops, c.audit)
		if err != nil {
			return nil, fmt.Errorf("commit catalog: %w", err)
		}
		if !resp.Succeeded {
			s.log.DebugContext(ctx, "catalog write lost to a concurrent one; retrying", "attempt", attempt+1)
			continue
		}
		if err := s.catalogApplied.wait(ctx, resp.Header.Revision); err != nil {
			return nil, fmt.Errorf("catalog committed at revision %d, snapshot not yet rebuilt: %w", resp.Header.Revision, err)
		}
		snap := s.Snapshot()
		for _, d := range snap.NewDangling(before) {
			s.log.WarnContext(ctx, "catalog holds a dangling reference", "reference", d)
		}
		return snap, nil
	}
	return nil, fmt.Errorf("catalog write lost to concurrent writes %d times: %w", maxAttempts, store.ErrVersionConflict)
}

// watch applies the catalog's changes, from the revision after st's, to
// st and swaps in a snapshot rebuilt from it after each etcd revision.
func (s *Store) watch(ctx context.Context, st *state) {
	defer close(s.done)
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), "/"+strings.Trim(s.cfg.Prefix, "/")+"/catalog", clientv3.WithPrefix(), clientv3.WithRev(st.rev+1), clientv3.WithProgressNotify())
		for wresp := range wch {
			if err := wresp.Err(); err != nil {
				s.log.Warn("catalog watch interrupted; reading the catalog again", "err", err)
				break
			}
			changed := map[string]bool{}
			for _, ev := range wresp.Events {
				key := string(ev.Kv.Key)
				if key == s.revKey {
					st.revKeyMod = ev.Kv.ModRevision
					continue
				}
				if !strings.HasPrefix(key, s.catalog) {
					continue
				}
				k := strings.TrimPrefix(key, s.catalog)
				changed[k] = true
				if ev.Type == clientv3.EventTypeDelete {
					delete(st.recs, k)
					continue
				}
				var r record
				if err := json.Unmarshal(ev.Kv.Value, &r); err != nil {
					s.log.Error("undecodable catalog object ignored", "key", key, "err", err)
					delete(st.recs, k)
					continue
				}
				st.recs[k] = r
			}
			if len(wresp.Events) > 0 {
				// The previous snapshot is st's before these events only
				// when it was derived from st (base is not nil).
				var prev *matchbox.Snapshot
				if b := s.base.Load(); b != nil {
					prev = b.snap
				}
				snap, err := s.derive(prev, st, changed)
				if err != nil {
					s.log.Error("catalog in etcd is invalid; keeping the previous snapshot", "err", err)
					s.base.Store(nil)
				} else {
					s.snap.Store(snap)
					s.base.Store(&baseSnapshot{snap: snap, revKeyMod: st.revKeyMod})
				}
			}
			st.rev = wresp.Header.Revision
			s.catalogApplied.set(st.rev)
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended (compaction, lost leader): read everything
		// again and resume from there.
		fresh, err := s.read(ctx)
		if err != nil {
			s.log.Warn("reading the catalog again failed", "err", err)
			pause(ctx, time.Second)
			continue
		}
		if snap, err := matchbox.Build(fresh.catalog(), s.cfg.ParseFact); err == nil {
			s.snap.Store(snap)
			s.base.Store(&baseSnapshot{snap: snap, revKeyMod: fresh.revKeyMod})
		} else {
			s.log.Error("catalog in etcd is invalid; keeping the previous snapshot", "err", err)
			s.base.Store(nil)
		}
		st = fresh
		s.catalogApplied.set(st.rev)
	}
}

// derive returns the snapshot of st, whose objects named by changed
// (kind/id keys) are those that differ from prev's catalog: prev with
// them applied when prev is not nil and they are few, built from the
// whole of st otherwise.
func (s *Store) derive(prev *matchbox.Snapshot, st *state, changed map[string]bool) (*matchbox.Snapshot, error) {
	if prev == nil || len(changed) > maxAppliedChanges {
		return matchbox.Build(st.catalog(), s.cfg.ParseFact)
	}
	keys := make([]string, 0, len(changed))
	for k := range changed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	changes := make([]matchbox.Change, 0, len(keys))
	for _, k := range keys {
		r, ok := st.recs[k]
		if !ok {
			kind, id, _ := strings.Cut(k, "/")
			changes = append(changes, matchbox.Change{Kind: matchbox.Kind(kind), ID: id})
			continue
		}
		o, err := decode(k, r)
		if err != nil {
			return nil, err
		}
		changes = append(changes, matchbox.Change{Kind: o.Kind, ID: o.ID, Profile: o.Profile, Group: o.Group, Template: o.Template})
	}
	return prev.Apply(changes, s.cfg.ParseFact)
}

// Import writes a data directory's objects in one transaction, as
// store.Store.Import does: objects are created or updated with their
// source, imported objects their source no longer provides are deleted,
// objects without a source are left alone, and nothing is written when
// the result is invalid or adds dangling references.
func (s *Store) Import(ctx context.Context, scope string, objs []*store.Object) (store.ImportResult, *matchbox.Snapshot, error) {
	var res store.ImportResult
	snap, err := s.updateCatalog(ctx, func(c store.CatalogTx) error {
		var err error
		res, err = store.ImportObjects(c, scope, objs) // a retried transaction counts afresh
		return err
	}, matchbox.NoNewDangling)
	return res, snap, err
}
