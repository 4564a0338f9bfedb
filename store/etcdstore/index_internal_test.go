package etcdstore

import (
	"testing"

	"matchbox/matchbox"
	"matchbox/store/internal/machineindex"
)

// TestApplyCommittedAheadOfWatch: a write applied to the index from its
// commit is not undone by the watch delivering older changes of the same
// machine, is handed back to the watch once the watch reaches it, and a
// write the watch already overtook is not applied again.
func TestApplyCommittedAheadOfWatch(t *testing.T) {
	s := &Store{index: machineindex.New(0, 0, 0), machinesApplied: newApplied(5)}
	s.ahead.writes = map[string]aheadWrite{}
	rec := func(state matchbox.MachineState) *matchbox.Machine {
		return &matchbox.Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}, State: state}
	}
	state := func() matchbox.MachineState {
		t.Helper()
		m, ok := s.index.ByID("m1")
		if !ok {
			return ""
		}
		return m.State
	}
	watch := func(modRev, upTo int64, m *matchbox.Machine) {
		s.ahead.mu.Lock()
		defer s.ahead.mu.Unlock()
		s.applyWatchedLocked("m1", modRev, m)
		s.watchedUpToLocked(upTo)
	}

	s.applyCommitted(10, map[string]*matchbox.Machine{"m1": rec(matchbox.StateProvisioning)})
	if got := state(); got != matchbox.StateProvisioning {
		t.Fatalf("after the commit at 10 the index has state %q, want %q", got, matchbox.StateProvisioning)
	}
	watch(8, 9, rec(matchbox.StateDiscovered)) // an older change arrives late
	if got := state(); got != matchbox.StateProvisioning {
		t.Fatalf("the watch's change at 8 replaced the commit at 10: state %q, want %q", got, matchbox.StateProvisioning)
	}
	if _, ok := s.ahead.writes["m1"]; !ok {
		t.Fatal("the write at 10 left the ahead set before the watch reached 10")
	}
	watch(10, 10, rec(matchbox.StateProvisioning))
	if n := len(s.ahead.writes); n != 0 {
		t.Fatalf("%d writes still ahead once the watch reached them", n)
	}
	watch(12, 12, rec(matchbox.StateProvisioned)) // another instance's later write
	s.applyCommitted(11, map[string]*matchbox.Machine{"m1": rec(matchbox.StateDiscovered)})
	if got := state(); got != matchbox.StateProvisioned {
		t.Fatalf("a commit at 11 applied after the watch reached 12: state %q, want %q", got, matchbox.StateProvisioned)
	}
	s.applyCommitted(13, map[string]*matchbox.Machine{"m1": nil})
	if got := state(); got != "" {
		t.Fatalf("the delete at 13 left the machine indexed with state %q", got)
	}
	watch(12, 12, rec(matchbox.StateProvisioned))
	if got := state(); got != "" {
		t.Fatalf("the watch's change at 12 brought back the machine deleted at 13 (state %q)", got)
	}
}
