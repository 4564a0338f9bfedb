package boothttp

import (
	"context"
	"sync"
	"time"

	"matchbox/matchbox"
)

// DefaultRepeatInterval is how long a known machine's repeated answers are
// counted instead of recorded, when Config.RepeatInterval is zero.
const DefaultRepeatInterval = time.Minute

// repeats folds the repeated answers of known machines. A machine in a
// boot loop, a retrying fleet or a boot storm asks the same endpoint again
// and again and gets the same answer; each request written as a timeline
// row would cost a share of a SQLite transaction and say nothing new. For
// each known machine and event type it keeps the last answer recorded:
// a request answered the same (same status, group, profile and error,
// machine in the same state) within the interval of that record is
// counted here, not recorded. The count reaches the timeline as one row
// (detail count and last_at, at the first folded request's time), written
// when the machine's answer changes, when the next record is due, or when
// a sweep finds the interval over; a first boot, a changed answer or
// state, and errors are recorded as they happen.
type repeats struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[repeatKey]*repeatEntry
	stopped  bool
}

type repeatKey struct{ machine, event string }

type repeatEntry struct {
	outcome  matchbox.Outcome
	state    matchbox.MachineState
	mac      string
	uuid     string
	recorded time.Time // when the last recorded request came
	folded   int       // requests counted since
	first    time.Time // the first of them
	latest   time.Time // the last of them
}

func newRepeats(interval time.Duration) *repeats {
	return &repeats{interval: interval, last: map[repeatKey]*repeatEntry{}}
}

// pending returns the row standing for e's folded requests.
func (e *repeatEntry) pending(k repeatKey) matchbox.BootEvent {
	return matchbox.BootEvent{
		MachineID: k.machine, MAC: e.mac, UUID: e.uuid, Type: k.event, At: e.first, Outcome: e.outcome,
		Detail: map[string]any{"count": e.folded, "last_at": e.latest.UTC().Format(time.RFC3339Nano)},
	}
}

// observe takes the event of a known machine's request answered at now,
// in state. fold reports that the event is counted and must not be
// recorded; flush, when not nil, is the row of earlier folded requests, to
// be recorded before ev.
func (r *repeats) observe(ev *matchbox.BootEvent, state matchbox.MachineState, now time.Time) (fold bool, flush *matchbox.BootEvent) {
	k := repeatKey{ev.MachineID, ev.Type}
	ok := ev.Outcome.Status >= 200 && ev.Outcome.Status <= 299 && ev.Outcome.Error == "" && len(ev.Detail) == 0
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false, nil
	}
	e := r.last[k]
	if e != nil && ok && e.outcome == ev.Outcome && e.state == state && now.Sub(e.recorded) < r.interval {
		if e.folded == 0 {
			e.first = now
		}
		e.folded++
		e.latest = now
		return true, nil
	}
	if e != nil && e.folded > 0 {
		p := e.pending(k)
		flush = &p
	}
	if !ok {
		delete(r.last, k)
		return false, flush
	}
	r.last[k] = &repeatEntry{outcome: ev.Outcome, state: state, mac: ev.MAC, uuid: ev.UUID, recorded: now}
	return false, flush
}

// sweep returns the rows of folded requests whose interval is over at now
// (all of them when all is set), and forgets machines idle for an interval.
func (r *repeats) sweep(now time.Time, all bool) []matchbox.BootEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []matchbox.BootEvent
	for k, e := range r.last {
		over := now.Sub(e.recorded) >= r.interval
		if e.folded > 0 && (over || all) {
			out = append(out, e.pending(k))
			// The next request starts a new record.
			delete(r.last, k)
			continue
		}
		if over && (e.folded == 0 || all) {
			delete(r.last, k)
		}
	}
	return out
}

// stop returns every folded request's row and records every request from
// then on.
func (r *repeats) stop() []matchbox.BootEvent {
	out := r.sweep(time.Now(), true)
	r.mu.Lock()
	r.stopped = true
	clear(r.last)
	r.mu.Unlock()
	return out
}

// RunRepeats writes the counts of known machines' repeated answers to the
// timeline once their interval is over, until ctx ends; then it writes
// what is left and records every further request. Without it, a count
// reaches the timeline only with the machine's next request.
func (s *Server) RunRepeats(ctx context.Context) error {
	if s.repeats == nil {
		return nil
	}
	t := time.NewTicker(s.repeats.interval / 4)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			for _, ev := range s.repeats.sweep(now, false) {
				s.cfg.Events.Record(ev)
			}
		case <-ctx.Done():
			for _, ev := range s.repeats.stop() {
				s.cfg.Events.Record(ev)
			}
			return nil
		}
	}
}
