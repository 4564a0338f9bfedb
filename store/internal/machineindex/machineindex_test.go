package machineindex

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
)

func TestIndex(t *testing.T) {
	ix := New(0, 0, 0)
	a := &matchbox.Machine{ID: "a", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, UUID: "0f3c2a1e-0000-4000-8000-000000000001", State: matchbox.StateReady}
	b := &matchbox.Machine{ID: "b", MACs: []string{"52:54:00:00:00:03"}, State: matchbox.StateReady}
	ix.Put(a)
	ix.Put(b)
	// a changes: it loses a MAC, its UUID and its state.
	a2 := &matchbox.Machine{ID: "a", MACs: []string{"52:54:00:00:00:01"}, State: matchbox.StateProvisioning}
	ix.Put(a2)

	tests := []struct {
		name, mac, uuid string
		want            string // id, "" for none
	}{
		{"by MAC", "52:54:00:00:00:01", "", "a"},
		{"a MAC the machine lost", "52:54:00:00:00:02", "", ""},
		{"a UUID the machine lost", "", "0F3C2A1E-0000-4000-8000-000000000001", ""},
		{"the MAC first, then the UUID", "52:54:00:00:00:99", "", ""},
		{"another machine", "52:54:00:00:00:03", "", "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := ix.Lookup(tc.mac, tc.uuid)
			if got := map[bool]string{true: m.ID}[ok]; got != tc.want {
				t.Errorf("Lookup(%q, %q) = %q, want %q", tc.mac, tc.uuid, got, tc.want)
			}
		})
	}
	ix.Put(&matchbox.Machine{ID: "c", UUID: "0f3c2a1e-0000-4000-8000-000000000002", State: matchbox.StateReady})
	if m, ok := ix.Lookup("", "0F3C2A1E-0000-4000-8000-000000000002"); !ok || m.ID != "c" {
		t.Errorf("Lookup by upper-case UUID = %v, %v; want c", m.ID, ok)
	}
	if diff := cmp.Diff(map[matchbox.MachineState]int{matchbox.StateReady: 2, matchbox.StateProvisioning: 1}, ix.CountByState()); diff != "" {
		t.Errorf("CountByState (-want +got):\n%s", diff)
	}
	ix.Remove("b")
	ix.Remove("absent")
	if _, ok := ix.Lookup("52:54:00:00:00:03", ""); ok {
		t.Error("a removed machine is still found by its MAC")
	}
	if _, ok := ix.ByID("b"); ok {
		t.Error("a removed machine is still found by its id")
	}
	if diff := cmp.Diff(map[matchbox.MachineState]int{matchbox.StateReady: 1, matchbox.StateProvisioning: 1}, ix.CountByState()); diff != "" {
		t.Errorf("CountByState after Remove (-want +got):\n%s", diff)
	}

	fresh := New(1, 1, 0)
	fresh.Put(b)
	ix.Replace(fresh)
	if got, want := ix.Len(), 1; got != want {
		t.Errorf("Len after Replace = %d, want %d", got, want)
	}
	if _, ok := ix.ByID("a"); ok {
		t.Error("Replace kept a machine the full read lacks")
	}
	if m, ok := ix.Lookup("52:54:00:00:00:03", ""); !ok || m.ID != "b" {
		t.Error("Replace lost a machine of the full read")
	}
}

// TestRemoveKeepsANewOwner: a MAC that moved to another machine stays with
// it when the machine that held it before is removed.
func TestRemoveKeepsANewOwner(t *testing.T) {
	ix := New(0, 0, 0)
	ix.Put(&matchbox.Machine{ID: "old", MACs: []string{"52:54:00:00:00:01"}})
	ix.Put(&matchbox.Machine{ID: "new", MACs: []string{"52:54:00:00:00:01"}})
	ix.Remove("old")
	if m, ok := ix.Lookup("52:54:00:00:00:01", ""); !ok || m.ID != "new" {
		t.Errorf("Lookup = %q, %v; want new", m.ID, ok)
	}
}
