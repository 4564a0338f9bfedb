package dhcp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/matchbox"
)

func TestReservations(t *testing.T) {
	const (
		withRecordIP  = "52:54:00:00:00:01"
		withPrefixIP  = "52:54:00:00:00:02"
		recordNoIP    = "52:54:00:00:00:03"
		groupOnly     = "52:54:00:00:00:04"
		unknown       = "52:54:00:00:00:05"
		badGroupIP    = "52:54:00:00:00:06"
		numericIP     = "52:54:00:00:00:07"
		recordAndBoth = "52:54:00:00:00:08"
		danglingGroup = "52:54:00:00:00:09"
	)
	records := map[string]MachineRecord{
		withRecordIP:  {Machine: Machine{ID: "m1", State: matchbox.StateReady}, ReservedIP: "10.0.0.5"},
		withPrefixIP:  {Machine: Machine{ID: "m2", State: matchbox.StateProvisioned, PXEDisabled: true}, ReservedIP: "10.0.0.6/24"},
		recordNoIP:    {Machine: Machine{ID: "m3", State: matchbox.StateDiscovered}},
		recordAndBoth: {Machine: Machine{ID: "m8"}, ReservedIP: "10.0.0.8"},
	}
	group := func(id, mac string, meta map[string]any) matchbox.Group {
		g := matchbox.Group{ID: id, Profile: "p", Metadata: meta}
		if mac != "" {
			g.Selector = map[string]string{"mac": mac}
		}
		return g
	}
	snap, err := matchbox.Build(matchbox.Catalog{
		Profiles: []matchbox.Profile{{ID: "p", Boot: matchbox.Boot{Kernel: "/k"}}},
		Groups: []matchbox.Group{
			group("default", "", map[string]any{"ip": "10.0.0.99"}), // selects by no mac: reserves nothing
			group("g3", recordNoIP, map[string]any{"ip": "10.0.0.30"}),
			group("g4", groupOnly, map[string]any{"ip": "10.0.0.40/24"}),
			group("g6", badGroupIP, map[string]any{"ip": "fd00::6"}),
			group("g7", numericIP, map[string]any{"ip": 7}),
			group("g8", recordAndBoth, map[string]any{"ip": "10.0.0.80"}),
			{ID: "g9", Profile: "not-yet-written", Selector: map[string]string{"mac": danglingGroup}, Metadata: map[string]any{"ip": "10.0.0.90"}},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := Reservations{
		Records: func(mac, _ string) (MachineRecord, bool) { rec, ok := records[mac]; return rec, ok },
		Catalog: func() *matchbox.Snapshot { return snap },
	}
	ip := netip.MustParseAddr
	tests := []struct {
		name      string
		mac       string
		want      Machine
		wantKnown bool
	}{
		{"record ip", withRecordIP, Machine{ID: "m1", State: matchbox.StateReady, IP: ip("10.0.0.5")}, true},
		{"record ip with a prefix", withPrefixIP, Machine{ID: "m2", State: matchbox.StateProvisioned, PXEDisabled: true, IP: ip("10.0.0.6")}, true},
		{"record without ip: the mac group's metadata ip", recordNoIP, Machine{ID: "m3", State: matchbox.StateDiscovered, IP: ip("10.0.0.30")}, true},
		{"no record: the mac group's metadata ip, known", groupOnly, Machine{IP: ip("10.0.0.40")}, true},
		{"record ip wins over the group's", recordAndBoth, Machine{ID: "m8", IP: ip("10.0.0.8")}, true},
		{"default group reserves nothing", unknown, Machine{}, false},
		{"a group whose profile is missing still reserves", danglingGroup, Machine{IP: ip("10.0.0.90")}, true},
		{"IPv6 metadata ip is no reservation", badGroupIP, Machine{}, false},
		{"metadata ip that is not a string is no reservation", numericIP, Machine{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, known := r.LookupMachine(context.Background(), tc.mac, "")
			if known != tc.wantKnown {
				t.Errorf("known %v, want %v", known, tc.wantKnown)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("machine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReservedIP(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"10.0.0.5", "10.0.0.5", true},
		{"10.0.0.5/24", "10.0.0.5", true},
		{"", "invalid IP", false},
		{"fd00::1", "fd00::1", false},
		{"10.0.0", "invalid IP", false},
	}
	for _, tc := range tests {
		got, ok := ParseReservedIP(tc.in)
		if got.String() != tc.want || ok != tc.wantOK {
			t.Errorf("ParseReservedIP(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}
