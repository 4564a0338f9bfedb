package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"matchbox/matchbox"
)

// AppendEvents appends events to the timelines of machines that exist,
// named by MachineID or by a MAC the machine has, in one transaction. It
// creates no machine: an event whose MAC no machine has fails the batch with
// ErrNotFound. The lifecycle and the API write through it.
func (s *Store) AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return s.appendEvents(ctx, evs, false)
}

// DiscoverAndAppendEvents is how matchbox discovers machines: it appends
// events seen on the network (DHCP, TFTP, the boot endpoints), and, in the
// same transaction, first creates a machine in state discovered (its id
// from the MAC, see MachineIDFromMAC) for every MAC that no machine has, and
// records the UUID a known machine reports for the first time. The Recorder
// calls it when RecorderConfig.Discover is set, which `matchbox serve` does;
// nothing else creates machines from events.
func (s *Store) DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return s.appendEvents(ctx, evs, true)
}

// appendEvents writes events in one transaction, creating machines for
// unknown MACs when discover is set.
func (s *Store) appendEvents(ctx context.Context, evs []matchbox.BootEvent, discover bool) error {
	if len(evs) == 0 {
		return nil
	}
	// A lease commit waiting for the write connection goes first: its
	// ACK waits for it, nothing waits for a timeline.
	s.leaseFirst.yield(ctx)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.rowStmts.prepare(ctx, s.write)
	type newMachine struct{ id, mac, uuid string }
	var created []newMachine
	refresh := map[string]bool{}
	err := s.inTxRelaxed(ctx, func(tx *sql.Tx) error {
		created = created[:0]
		clear(refresh)
		now := timestamp(s.now())
		machines := newEnsurer(ctx, tx)
		defer machines.close()
		// Resolve each event's machine: the in-memory index knows every
		// stored MAC, so a MAC it lacks is a new machine (when
		// discovering), created below with the others of the batch in
		// multi-row statements.
		resolved := map[string]string{}
		newByMAC := map[string]int{} // index in created
		ids := make([]string, len(evs))
		for i := range evs {
			ev := &evs[i]
			id := ev.MachineID
			if id == "" {
				if ev.MAC == "" {
					return fmt.Errorf("event %s names no machine and no MAC", ev.Type)
				}
				uuid := matchbox.MachineUUID(ev.UUID)
				if j, ok := newByMAC[ev.MAC]; ok {
					id = created[j].id
					if created[j].uuid == "" {
						created[j].uuid = uuid
					}
				} else if known, ok := resolved[ev.MAC]; ok && uuid == "" {
					id = known
				} else if sum, ok := s.LookupMachine(ev.MAC, ""); ok {
					id = sum.ID
					if discover && uuid != "" && sum.UUID == "" {
						// Record the UUID the machine reports now.
						if _, _, err := machines.ensure(ev.MAC, uuid, now); err != nil {
							return err
						}
						refresh[id] = true
					}
				} else if !discover {
					return fmt.Errorf("%s event of MAC %s: no machine has the MAC: %w", ev.Type, ev.MAC, ErrNotFound)
				} else {
					id = MachineIDFromMAC(ev.MAC)
					newByMAC[ev.MAC] = len(created)
					created = append(created, newMachine{id, ev.MAC, uuid})
				}
				resolved[ev.MAC] = id
			}
			ids[i] = id
		}
		if err := insertRows(ctx, tx, &s.rowStmts, machinesInsert(), len(created), func(i int) []any { m := created[i]; return []any{m.id, m.uuid, now, now} }); err != nil {
			return fmt.Errorf("create machines for new MACs: %w", err)
		}
		if err := insertRows(ctx, tx, &s.rowStmts, machineMACsInsert(), len(created), func(i int) []any { return []any{created[i].mac, created[i].id} }); err != nil {
			return fmt.Errorf("record new MACs: %w", err)
		}
		rows := make([][]any, len(evs))
		for i := range evs {
			ev := &evs[i]
			detail := []byte("{}")
			if d := ev.MergedDetail(); len(d) > 0 {
				var err error
				if detail, err = json.Marshal(d); err != nil {
					return fmt.Errorf("encode %s event of machine %q: %w", ev.Type, ids[i], err)
				}
			}
			at := ev.At
			if at.IsZero() {
				at = s.now()
			}
			rows[i] = []any{ids[i], timestamp(at), ev.Type, string(detail)}
		}
		if err := insertRows(ctx, tx, &s.rowStmts, eventsInsert(), len(rows), func(i int) []any { return rows[i] }); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
		// What each machine was last served, where that changed.
		for id, o := range matchbox.LastServed(evs, ids) {
			if m, ok := s.LookupMachineByID(id); ok && m.ServedGroup == o.Group && m.ServedProfile == o.Profile {
				continue
			}
			if _, err := tx.ExecContext(ctx, "UPDATE machines SET served_group = ?, served_profile = ? WHERE id = ?", o.Group, o.Profile, id); err != nil {
				return fmt.Errorf("record what machine %q was served: %w", id, err)
			}
			refresh[id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range created {
		if _, existed := s.LookupMachineByID(m.id); existed || refresh[m.id] {
			// The id was taken by a machine declared with other MACs.
			if err := s.refreshMachine(ctx, m.id); err != nil {
				return err
			}
			continue
		}
		s.index.Put(&matchbox.Machine{ID: m.id, UUID: m.uuid, MACs: []string{m.mac}, State: matchbox.StateDiscovered})
	}
	for id := range refresh {
		if err := s.refreshMachine(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// EventFilter narrows Events.
type EventFilter struct {
	Type    string    // exact type, or a prefix ending in "." ("dhcp.")
	Since   time.Time // events at or after
	AfterID int64     // events with a greater id (pagination)
	Limit   int       // 0: 1000
	Newest  bool      // the newest Limit events (still returned oldest first)
	// Written orders a machine's events as they were written (by id)
	// instead of by time, so that AfterID follows a live timeline: an
	// event written late with an earlier time is still after the cursor.
	Written bool
}

// Events returns a machine's timeline, oldest first.
func (s *Store) Events(ctx context.Context, machineID string, f EventFilter) ([]matchbox.Event, error) {
	return s.events(ctx, &machineID, f)
}

// FleetEvents returns the events of every machine, oldest first.
func (s *Store) FleetEvents(ctx context.Context, f EventFilter) ([]matchbox.Event, error) {
	return s.events(ctx, nil, f)
}

// events lists the events of one machine, or of all when machineID is nil.
func (s *Store) events(ctx context.Context, machineID *string, f EventFilter) ([]matchbox.Event, error) {
	// A machine's timeline is ordered by time, then id: events are
	// written in batches in the background (the recorder) or at once (the
	// lifecycle, the API), so ids alone can put a later action before an
	// earlier request. Stored times vary in width (RFC 3339, trailing zeros
	// cut), so they are compared through strftime (to the millisecond). The
	// fleet's events stay in id order: a cursor over everything written.
	// The cursor AfterID names the last event seen, in either order.
	const when = "strftime('%Y-%m-%dT%H:%M:%f', at)"
	q := "SELECT id, machine_id, at, type, detail FROM events WHERE "
	var args []any
	order, reverse := "id", "id DESC"
	what := "the fleet"
	switch {
	case machineID != nil && f.Written:
		q += "machine_id = ? AND id > ?"
		args = append(args, *machineID, f.AfterID)
		what = fmt.Sprintf("machine %q", *machineID)
	case machineID != nil:
		q += "machine_id = ?"
		args = append(args, *machineID)
		what = fmt.Sprintf("machine %q", *machineID)
		order, reverse = when+", id", when+" DESC, id DESC"
		if f.AfterID > 0 {
			q += " AND (" + when + ", id) > (SELECT " + when + ", id FROM events WHERE id = ?)"
			args = append(args, f.AfterID)
		}
	default:
		q += "id > ?"
		args = append(args, f.AfterID)
	}
	if f.Type != "" {
		if f.Type[len(f.Type)-1] == '.' {
			q += " AND substr(type, 1, ?) = ?"
			args = append(args, len(f.Type), f.Type)
		} else {
			q += " AND type = ?"
			args = append(args, f.Type)
		}
	}
	if !f.Since.IsZero() {
		q += " AND " + when + " >= strftime('%Y-%m-%dT%H:%M:%f', ?)"
		args = append(args, timestamp(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	if f.Newest {
		q = "SELECT * FROM (" + q + " ORDER BY " + reverse + " LIMIT ?) ORDER BY " + order
	} else {
		q += " ORDER BY " + order + " LIMIT ?"
	}
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", what, err)
	}
	defer rows.Close()
	var out []matchbox.Event
	for rows.Next() {
		var ev matchbox.Event
		var at, detail string
		if err := rows.Scan(&ev.ID, &ev.MachineID, &at, &ev.Type, &detail); err != nil {
			return nil, fmt.Errorf("list events of %s: %w", what, err)
		}
		ev.At = parseTimestamp(at)
		if detail != "" && detail != "{}" {
			if err := json.Unmarshal([]byte(detail), &ev.Detail); err != nil {
				return nil, fmt.Errorf("decode event %d: %w", ev.ID, err)
			}
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Queue is how many events may wait; further events are dropped and
	// counted (default 8192).
	Queue int
	// Batch is the most events collected (and repeats folded) before they
	// are written (default 512).
	Batch int
	// TxEvents is the most events written in one transaction (default
	// 64): a batch is written in transactions of at most this many
	// events, so that a lease commit, which waits for the single write
	// connection, waits behind one short transaction, not a whole batch.
	TxEvents int
	// FlushInterval is how long an event may wait for others to share its
	// transaction (default 100ms).
	FlushInterval time.Duration
	// Logger receives the events lost to write failures and those
	// dropped for a full queue, each once per DropLogInterval.
	Logger *slog.Logger
	// DropLogInterval is how often dropped and failed events are logged:
	// one warning per interval in which some were (default 10s).
	DropLogInterval time.Duration
	// ShutdownWrites bounds the writes of the events still queued when
	// Run's context ends (default 30s in all): a store too slow to take
	// them (a loaded etcd, a boot storm's backlog of new machines) must
	// not hold a shutdown for minutes. Events not written by then are
	// counted as failed and logged.
	ShutdownWrites time.Duration
	// Discover makes the recorder write with DiscoverAndAppendEvents, so
	// that an event from a MAC no machine has creates a machine in state
	// discovered; without it, the recorder writes with AppendEvents and
	// such an event fails its batch.
	Discover bool
}

// Recorder appends boot events in the background, in batches, so that the
// request paths never wait for the disk. With RecorderConfig.Discover it is
// where machines seen on the network first come to exist.
type Recorder struct {
	store   EventWriter
	cfg     RecorderConfig
	ch      chan matchbox.BootEvent
	flush   chan chan struct{}
	dropped atomic.Int64
	failed  atomic.Int64
}

// EventWriter is where a Recorder writes: the SQLite Store or another
// Backend.
type EventWriter interface {
	AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error
	DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error
}

// NewRecorder returns a recorder writing to s; call Run to start it.
func NewRecorder(s EventWriter, cfg RecorderConfig) *Recorder {
	if cfg.Queue <= 0 {
		cfg.Queue = 8192
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 512
	}
	if cfg.TxEvents <= 0 {
		cfg.TxEvents = 64
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DropLogInterval <= 0 {
		cfg.DropLogInterval = 10 * time.Second
	}
	if cfg.ShutdownWrites <= 0 {
		cfg.ShutdownWrites = 30 * time.Second
	}
	return &Recorder{store: s, cfg: cfg, ch: make(chan matchbox.BootEvent, cfg.Queue), flush: make(chan chan struct{})}
}

// Record queues an event without blocking; it returns false (and counts the
// drop) when the queue is full.
func (r *Recorder) Record(ev matchbox.BootEvent) bool {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	select {
	case r.ch <- ev:
		return true
	default:
		r.dropped.Add(1)
		return false
	}
}

// Dropped returns how many events were dropped because the queue was full;
// Failed how many were lost to write errors.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Failed returns how many events were lost to write errors.
func (r *Recorder) Failed() int64 { return r.failed.Load() }

// Sync waits until every event queued before the call is written.
func (r *Recorder) Sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case r.flush <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run writes queued events until ctx is done, then writes what is left.
// Identical events of one machine that wait in the same batch (a machine
// in a boot loop, or retrying a request) are written once, with detail
// "count" and "last_at".
func (r *Recorder) Run(ctx context.Context) {
	b := newBatch(r.cfg.Batch)
	var lastFailure error
	// Writes outlive ctx so that a shutdown still stores the tail, within
	// ShutdownWrites once ctx ended.
	parent := context.WithoutCancel(ctx)
	write := func() {
		if b.empty() {
			return
		}
		evs := b.events()
		for start := 0; start < len(evs); start += r.cfg.TxEvents {
			end := min(start+r.cfg.TxEvents, len(evs))
			if parent.Err() != nil {
				r.failed.Add(int64(b.receivedIn(start, end)))
				lastFailure = fmt.Errorf("not written within the shutdown's %v: %w", r.cfg.ShutdownWrites, parent.Err())
				continue
			}
			wctx, cancel := context.WithTimeout(parent, 30*time.Second)
			var err error
			if r.cfg.Discover {
				err = r.store.DiscoverAndAppendEvents(wctx, evs[start:end])
			} else {
				err = r.store.AppendEvents(wctx, evs[start:end])
			}
			cancel()
			if err != nil {
				// Counted now, logged once per DropLogInterval (a full
				// disk fails every batch).
				r.failed.Add(int64(b.receivedIn(start, end)))
				lastFailure = err
			}
		}
		b.reset()
	}
	drain := func() {
		for b.received < r.cfg.Batch*8 && len(b.list) < r.cfg.Batch {
			select {
			case ev := <-r.ch:
				b.add(ev)
			default:
				return
			}
		}
	}
	// A batch is written when it is full or FlushInterval after its first
	// event, so that a busy server commits a few times a second instead of
	// once per event.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	dropTicker := time.NewTicker(r.cfg.DropLogInterval)
	defer dropTicker.Stop()
	var droppedLogged, failedLogged int64
	for {
		select {
		case <-dropTicker.C:
			if d := r.dropped.Load(); d > droppedLogged {
				r.cfg.Logger.Warn("boot events dropped: the recorder's queue was full", "dropped", d-droppedLogged, "dropped_total", d, "interval", r.cfg.DropLogInterval, "queue", r.cfg.Queue)
				droppedLogged = d
			}
			if f := r.failed.Load(); f > failedLogged {
				r.cfg.Logger.Warn("boot events lost: writing them to the store failed", "events", f-failedLogged, "failed_total", f, "interval", r.cfg.DropLogInterval, "err", lastFailure)
				failedLogged = f
			}
		case ev := <-r.ch:
			if b.empty() {
				timer.Reset(r.cfg.FlushInterval)
			}
			b.add(ev)
			drain()
			if len(b.list) >= r.cfg.Batch || b.received >= r.cfg.Batch*8 {
				timer.Stop()
				write()
			}
		case <-timer.C:
			drain()
			write()
		case done := <-r.flush:
			timer.Stop()
			for {
				drain()
				if b.empty() {
					break
				}
				write()
			}
			close(done)
		case <-ctx.Done():
			timer.Stop()
			var cancel context.CancelFunc
			parent, cancel = context.WithTimeout(parent, r.cfg.ShutdownWrites)
			defer cancel()
			failedBefore := r.failed.Load()
			for {
				drain()
				if b.empty() {
					break
				}
				write()
			}
			if f := r.failed.Load() - failedBefore; f > 0 {
				r.cfg.Logger.Warn("boot events lost at shutdown: writing them to the store failed", "events", f, "failed_total", r.failed.Load(), "err", lastFailure)
			}
			return
		}
	}
}

// batch collects events, folding repeats of the same event.
type batch struct {
	list     []matchbox.BootEvent
	counts   []int
	last     []time.Time
	byKey    map[eventKey]int
	received int
}

type eventKey struct{ machine, mac, typ string }

func newBatch(n int) *batch {
	return &batch{byKey: make(map[eventKey]int, n)}
}

func (b *batch) add(ev matchbox.BootEvent) {
	b.received++
	k := eventKey{ev.MachineID, ev.MAC, ev.Type}
	if i, ok := b.byKey[k]; ok && b.list[i].Outcome == ev.Outcome && sameDetail(b.list[i].Detail, ev.Detail) {
		b.counts[i]++
		b.last[i] = ev.At
		return
	}
	b.byKey[k] = len(b.list)
	b.list = append(b.list, ev)
	b.counts = append(b.counts, 1)
	b.last = append(b.last, ev.At)
}

// sameDetail compares two event details; scalar values (what events carry)
// are compared directly, anything else with reflect.DeepEqual.
func sameDetail(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		switch x := va.(type) {
		case string:
			if y, ok := vb.(string); !ok || x != y {
				return false
			}
		case int:
			if y, ok := vb.(int); !ok || x != y {
				return false
			}
		case int64:
			if y, ok := vb.(int64); !ok || x != y {
				return false
			}
		case float64:
			if y, ok := vb.(float64); !ok || x != y {
				return false
			}
		case bool:
			if y, ok := vb.(bool); !ok || x != y {
				return false
			}
		default:
			if !reflect.DeepEqual(va, vb) {
				return false
			}
		}
	}
	return true
}

func (b *batch) empty() bool { return len(b.list) == 0 }

// receivedIn returns how many received events the batch's events start to
// end stand for (repeats folded into one count).
func (b *batch) receivedIn(start, end int) int {
	n := 0
	for _, c := range b.counts[start:end] {
		n += c
	}
	return n
}

func (b *batch) events() []matchbox.BootEvent {
	out := make([]matchbox.BootEvent, len(b.list))
	for i, ev := range b.list {
		if b.counts[i] > 1 {
			base := ev.MergedDetail()
			detail := make(map[string]any, len(base)+2)
			for k, v := range base {
				detail[k] = v
			}
			detail["count"] = b.counts[i]
			detail["last_at"] = b.last[i].UTC().Format(time.RFC3339Nano)
			ev.Detail, ev.Outcome = detail, matchbox.Outcome{}
		}
		out[i] = ev
	}
	return out
}

func (b *batch) reset() {
	b.list, b.counts, b.last, b.received = b.list[:0], b.counts[:0], b.last[:0], 0
	clear(b.byKey)
}
