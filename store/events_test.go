package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
)

// TestWhoCreatesMachines pins down that only the discovering writes create
// machines from events: AppendEvents refuses a MAC no machine has, and
// leaves the store as it was.
func TestWhoCreatesMachines(t *testing.T) {
	const known, unknown = "52:54:00:00:00:01", "52:54:00:00:00:02"
	tests := []struct {
		name        string
		write       func(s *Store, evs []matchbox.BootEvent) error
		mac         string
		wantErr     error
		wantMachine bool // a machine has the MAC afterwards
		wantUUID    string
	}{
		{"append, known MAC", appendOnly, known, nil, true, ""},
		{"append, unknown MAC", appendOnly, unknown, ErrNotFound, false, ""},
		{"discover, known MAC", discover, known, nil, true, "u1"},
		{"discover, unknown MAC", discover, unknown, nil, true, "u1"},
		{"recorder, known MAC", recordWith(false), known, nil, true, ""},
		{"recorder, unknown MAC", recordWith(false), unknown, nil, false, ""},
		{"discovering recorder, unknown MAC", recordWith(true), unknown, nil, true, "u1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTest(t)
			if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m1", MACs: []string{known}}, 0); err != nil {
				t.Fatal(err)
			}
			err := tc.write(s, []matchbox.BootEvent{{MAC: tc.mac, UUID: "u1", Type: "dhcp.discover"}})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("write: %v, want %v", err, tc.wantErr)
			}
			sum, ok := s.LookupMachine(tc.mac, "")
			if ok != tc.wantMachine {
				t.Fatalf("machine with MAC %s: %v, want %v", tc.mac, ok, tc.wantMachine)
			}
			if !ok {
				if _, err := s.MachineIDByMAC(ctx, tc.mac); err == nil {
					t.Fatal("MAC stored but not indexed")
				}
				return
			}
			if sum.UUID != tc.wantUUID {
				t.Fatalf("UUID %q, want %q", sum.UUID, tc.wantUUID)
			}
			evs, err := s.Events(ctx, sum.ID, EventFilter{})
			if err != nil || len(evs) != 1 || evs[0].Type != "dhcp.discover" {
				t.Fatalf("events of %s: %+v %v", sum.ID, evs, err)
			}
		})
	}
}

func appendOnly(s *Store, evs []matchbox.BootEvent) error {
	return s.AppendEvents(context.Background(), evs)
}

func discover(s *Store, evs []matchbox.BootEvent) error {
	return s.DiscoverAndAppendEvents(context.Background(), evs)
}

// recordWith writes through a Recorder; its write errors are only counted,
// so it reports none.
func recordWith(discover bool) func(*Store, []matchbox.BootEvent) error {
	return func(s *Store, evs []matchbox.BootEvent) error {
		rec := NewRecorder(s, RecorderConfig{Discover: discover})
		for _, ev := range evs {
			rec.Record(ev)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rec.Run(ctx); close(done) }()
		err := rec.Sync(ctx)
		cancel()
		<-done
		return err
	}
}

// TestTimelineOrder: a machine's timeline is ordered by time, then id,
// whatever order the events were written in (the recorder writes a
// request's event after an action the request led to), and its cursors
// (AfterID, Newest, Since) follow that order; Written keeps the order of
// writing for following a timeline live.
func TestTimelineOrder(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}}, 0); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// Written in this order; times chosen so that id order, string order
	// of the stored times ("05Z" sorts after "05.5Z") and time order differ.
	writes := []matchbox.BootEvent{
		{MachineID: "m1", Type: "c", At: t0.Add(time.Second)},
		{MachineID: "m1", Type: "a", At: t0},
		{MachineID: "m1", Type: "b", At: t0.Add(500 * time.Millisecond)},
		{MachineID: "m1", Type: "b2", At: t0.Add(500 * time.Millisecond)},
		{MachineID: "m1", Type: "d", At: t0.Add(2 * time.Second)},
	}
	for _, ev := range writes {
		if err := s.AppendEvents(ctx, []matchbox.BootEvent{ev}); err != nil {
			t.Fatal(err)
		}
	}
	types := func(f EventFilter) []string {
		t.Helper()
		evs, err := s.Events(ctx, "m1", f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			out = append(out, e.Type)
		}
		return out
	}
	all, err := s.Events(ctx, "m1", EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var b EventFilter
	for _, e := range all {
		if e.Type == "b" {
			b.AfterID = e.ID
		}
	}
	tests := []struct {
		name string
		f    EventFilter
		want []string
	}{
		{"all", EventFilter{}, []string{"a", "b", "b2", "c", "d"}},
		{"limit", EventFilter{Limit: 2}, []string{"a", "b"}},
		{"newest", EventFilter{Limit: 2, Newest: true}, []string{"c", "d"}},
		{"after b", EventFilter{AfterID: b.AfterID}, []string{"b2", "c", "d"}},
		{"since", EventFilter{Since: t0.Add(500 * time.Millisecond)}, []string{"b", "b2", "c", "d"}},
		{"as written", EventFilter{Written: true}, []string{"c", "a", "b", "b2", "d"}},
		{"as written after b", EventFilter{Written: true, AfterID: b.AfterID}, []string{"b2", "d"}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, types(tc.f)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
