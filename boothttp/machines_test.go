package boothttp

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
)

// lowerIndex knows one machine, by its MAC and its lower-case UUID, as
// the stores' indexes do.
type lowerIndex struct{}

func (lowerIndex) LookupMachine(mac, uuid string) (matchbox.Machine, bool) {
	if mac == "52:54:00:00:00:01" || uuid == "4c4c4544-0000-1000-8000-000000000001" {
		return matchbox.Machine{ID: "m1", State: matchbox.StateReady, Labels: map[string]string{"os": "installed"}}, true
	}
	return matchbox.Machine{}, false
}

func TestIndexLookup(t *testing.T) {
	want := MachineView{ID: "m1", State: matchbox.StateReady, Labels: map[string]string{"os": "installed"}}
	cases := []struct {
		name, mac, uuid string
		found           bool
	}{
		{"by MAC", "52:54:00:00:00:01", "", true},
		{"by lower-case UUID", "", "4c4c4544-0000-1000-8000-000000000001", true},
		{"by upper-case UUID", "", "4C4C4544-0000-1000-8000-000000000001", true},
		{"unknown", "52:54:00:00:00:02", "4C4C4544-0000-1000-8000-000000000002", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := IndexLookup{Index: lowerIndex{}}.LookupMachine(context.Background(), tc.mac, tc.uuid)
			if ok != tc.found {
				t.Fatalf("found %v, want %v", ok, tc.found)
			}
			if !tc.found {
				if diff := cmp.Diff(MachineView{}, got); diff != "" {
					t.Errorf("an unknown machine's view is not empty (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("view (-want +got):\n%s", diff)
			}
		})
	}
}
