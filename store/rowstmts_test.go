package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
)

func TestRowChunks(t *testing.T) {
	tests := []struct {
		n    int
		want []int
	}{
		{0, nil},
		{1, []int{1}},
		{63, []int{32, 16, 8, 4, 2, 1}},
		{64, []int{64}},
		{128, []int{128}},
		{300, []int{128, 128, 32, 8, 4}},
	}
	for _, tt := range tests {
		var got []int
		rowChunks(tt.n, func(size int) error { got = append(got, size); return nil })
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("rowChunks(%d) (-want +got):\n%s", tt.n, diff)
		}
	}
}

// TestTimelineInsertsPrepared: a batch of new MACs, of a size that takes
// every chunk size, creates one machine per MAC and its events, through
// the prepared statements, and the second batch still does.
func TestTimelineInsertsPrepared(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	for batch, n := range []int{255, 3} {
		var evs []matchbox.BootEvent
		for i := range n {
			mac := fmt.Sprintf("02:00:00:00:%02x:%02x", batch, i)
			evs = append(evs, matchbox.BootEvent{MAC: mac, Type: "dhcp.offer"}, matchbox.BootEvent{MAC: mac, Type: "dhcp.ack", Detail: map[string]any{"ip": "10.0.0.1"}})
		}
		if err := s.DiscoverAndAppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if got := len(s.rowStmts.m); got != 3*8 {
			t.Fatalf("%d prepared timeline statements, want 24 (3 tables, 8 sizes)", got)
		}
		for i := range n {
			mac := fmt.Sprintf("02:00:00:00:%02x:%02x", batch, i)
			m, ok := s.LookupMachine(mac, "")
			if !ok {
				t.Fatalf("batch %d: no machine for %s", batch, mac)
			}
			got, err := s.Events(ctx, m.ID, EventFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].Type != "dhcp.offer" || got[1].Type != "dhcp.ack" {
				t.Fatalf("batch %d: events of %s: %+v, want dhcp.offer, dhcp.ack", batch, mac, got)
			}
		}
	}
	var machines int
	if err := s.read.QueryRow("SELECT count(*) FROM machines").Scan(&machines); err != nil {
		t.Fatal(err)
	}
	if machines != 258 {
		t.Errorf("%d machines, want 258", machines)
	}
}
