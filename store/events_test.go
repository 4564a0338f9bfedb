package store

import (
	"context"
	"errors"
	"testing"

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
