package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/audit"
	"matchbox/matchbox"
	"matchbox/store"
)

// auditOf reads the audit records f selects. Every store keeps them: one
// that answers an error fails.
func auditOf(t *testing.T, s store.AuditStore, f audit.Filter) []audit.Record {
	t.Helper()
	recs, err := s.Audit(context.Background(), f)
	if err != nil {
		t.Fatalf("audit %+v: %v", f, err)
	}
	return recs
}

// ignoreSeqTime compares records without the store's sequence and time.
var ignoreSeqTime = cmpopts.IgnoreFields(audit.Record{}, "ID", "At")

func testCatalogAudit(t *testing.T, s store.CatalogStore) {
	closeOnCleanup(t, s)
	ctx := audit.WithActor(context.Background(), "alice")
	steps := []struct {
		name    string
		fn      func(c store.CatalogTx) error
		wantErr error
	}{
		{"create", func(c store.CatalogTx) error { _, err := c.Put(Profile("p"), -1); return err }, nil},
		{"update", func(c store.CatalogTx) error { _, err := c.Put(Profile("p"), 1); return err }, nil},
		{"stale update", func(c store.CatalogTx) error { _, err := c.Put(Profile("p"), 1); return err }, store.ErrVersionConflict},
		{"a transaction that fails after a write", func(c store.CatalogTx) error {
			if _, err := c.Put(Profile("q"), 0); err != nil {
				return err
			}
			return c.Delete(matchbox.KindProfile, "missing", 0)
		}, store.ErrNotFound},
		{"delete", func(c store.CatalogTx) error { return c.Delete(matchbox.KindProfile, "p", 0) }, nil},
	}
	for _, st := range steps {
		checkErr(t, st.name, update(ctx, s, st.fn), st.wantErr)
	}
	want := []audit.Record{
		{Actor: "alice", Action: audit.ActionCreate, Kind: "profile", Object: "p", VersionBefore: 0, VersionAfter: 1},
		{Actor: "alice", Action: audit.ActionUpdate, Kind: "profile", Object: "p", VersionBefore: 1, VersionAfter: 2},
		{Actor: "alice", Action: audit.ActionDelete, Kind: "profile", Object: "p", VersionBefore: 2, VersionAfter: 0},
	}
	got := auditOf(t, s, audit.Filter{})
	if diff := cmp.Diff(want, got, ignoreSeqTime); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}

	// An import records its changes with its own actor.
	imp := audit.WithActor(context.Background(), audit.ActorDataDir)
	o := Profile("f")
	o.Source = "profiles/f.json"
	if _, _, err := s.Import(imp, "dir-a", []*store.Object{o}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Import(imp, "dir-a", nil); err != nil {
		t.Fatal(err)
	}
	want = []audit.Record{
		{Actor: audit.ActorDataDir, Action: audit.ActionCreate, Kind: "profile", Object: "f", VersionAfter: 1},
		{Actor: audit.ActorDataDir, Action: audit.ActionDelete, Kind: "profile", Object: "f", VersionBefore: 1},
	}
	got = auditOf(t, s, audit.Filter{Actor: audit.ActorDataDir})
	if diff := cmp.Diff(want, got, ignoreSeqTime); diff != "" {
		t.Errorf("import audit records (-want +got):\n%s", diff)
	}
}

func testMachineAudit(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	auditOf(t, s, audit.Filter{})
	ctx := audit.WithActor(context.Background(), "ops")
	start := time.Now().Add(-time.Second)
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", Labels: map[string]string{"rack": "a"}}, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", Labels: map[string]string{"rack": "b"}}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m"}, 1); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("stale machine write: %v, want a version conflict", err)
	}
	lc := audit.WithActor(context.Background(), audit.ActorLifecycle)
	if err := s.SetMachineState(lc, "m", matchbox.StateProvisioning); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMachineState(lc, "m", matchbox.StateReady, matchbox.StateDiscovered); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("state change from a state the machine is not in: %v", err)
	}
	if err := s.SetMachineBMC(ctx, "m", "sealed"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMachineBMC(ctx, "m", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMachine(ctx, "m", 99); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := s.DeleteMachine(ctx, "m", 0); err != nil {
		t.Fatal(err)
	}
	want := []audit.Record{
		{Actor: "ops", Action: audit.ActionCreate, Kind: audit.KindMachine, Object: "m", VersionAfter: 1},
		{Actor: "ops", Action: audit.ActionUpdate, Kind: audit.KindMachine, Object: "m", VersionBefore: 1, VersionAfter: 2, Detail: "labels"},
		{Actor: audit.ActorLifecycle, Action: audit.ActionState, Kind: audit.KindMachine, Object: "m", VersionBefore: 2, VersionAfter: 3, Detail: "discovered -> provisioning"},
		{Actor: "ops", Action: audit.ActionBMCSet, Kind: audit.KindMachine, Object: "m", VersionBefore: 3, VersionAfter: 4},
		{Actor: "ops", Action: audit.ActionBMCDelete, Kind: audit.KindMachine, Object: "m", VersionBefore: 4, VersionAfter: 5},
		{Actor: "ops", Action: audit.ActionDelete, Kind: audit.KindMachine, Object: "m", VersionBefore: 5},
	}
	all := auditOf(t, s, audit.Filter{Kind: audit.KindMachine, Object: "m"})
	if diff := cmp.Diff(want, all, ignoreSeqTime); diff != "" {
		t.Errorf("machine audit records (-want +got):\n%s", diff)
	}
	if len(all) != len(want) {
		return
	}
	for _, r := range all {
		if r.At.Before(start) || r.At.After(time.Now().Add(time.Second)) {
			t.Errorf("record %d at %v, not at the time of the change", r.ID, r.At)
		}
	}
	filters := []struct {
		name string
		f    audit.Filter
		want []audit.Record
	}{
		{"actor", audit.Filter{Actor: audit.ActorLifecycle}, want[2:3]},
		{"page", audit.Filter{After: all[1].ID, Limit: 2}, want[2:4]},
		{"since the future", audit.Filter{Since: time.Now().Add(time.Hour)}, nil},
		{"since before", audit.Filter{Since: start, Limit: 1}, want[:1]},
		{"another object", audit.Filter{Kind: audit.KindMachine, Object: "n"}, nil},
	}
	for _, tc := range filters {
		got := auditOf(t, s, tc.f)
		if diff := cmp.Diff(tc.want, got, ignoreSeqTime, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, diff)
		}
	}

	// Records of changes made elsewhere.
	if err := s.RecordAudit(audit.WithActor(context.Background(), audit.ActorTokenFile), audit.Record{Action: audit.ActionTokenAdd, Kind: audit.KindToken, Object: "ci", Detail: "role admin"}); err != nil {
		t.Fatal(err)
	}
	got := auditOf(t, s, audit.Filter{Kind: audit.KindToken})
	if diff := cmp.Diff([]audit.Record{{Actor: audit.ActorTokenFile, Action: audit.ActionTokenAdd, Kind: audit.KindToken, Object: "ci", Detail: "role admin"}}, got, ignoreSeqTime); diff != "" {
		t.Errorf("recorded (-want +got):\n%s", diff)
	}
}
