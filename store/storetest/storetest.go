// Package storetest is the conformance suite of store.Backend: table tests
// of every store operation, its transactions, version conflicts and failure
// answers. Each implementation runs it from its own tests:
//
//	storetest.Run(t, func(t *testing.T) store.Backend { return openEmpty(t) })
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"matchbox/dhcp"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// Open returns a new, empty store; the suite closes it. It is called once
// per subtest.
type Open func(t *testing.T) store.Backend

// OpenCatalog returns a new, empty catalog store; the suite closes it.
type OpenCatalog func(t *testing.T) store.CatalogStore

// Run runs the whole suite against the stores open returns.
func Run(t *testing.T, open Open) {
	t.Run("Catalog", func(t *testing.T) { RunCatalog(t, func(t *testing.T) store.CatalogStore { return open(t) }) })
	t.Run("Machines", func(t *testing.T) { RunMachines(t, open) })
	t.Run("Leases", func(t *testing.T) { RunLeases(t, open) })
}

// RunCatalog is the catalog part of the suite: object versions and
// conflicts, transactions (all or nothing, validated whole), snapshots and
// imports.
func RunCatalog(t *testing.T, open OpenCatalog) {
	t.Run("Versions", func(t *testing.T) { testCatalogVersions(t, open(t)) })
	t.Run("Transactions", func(t *testing.T) { testCatalogTransactions(t, open(t)) })
	t.Run("Import", func(t *testing.T) { testImport(t, open(t)) })
	t.Run("ImportScopes", func(t *testing.T) { testImportScopes(t, open(t)) })
	t.Run("Audit", func(t *testing.T) { testCatalogAudit(t, open(t)) })
}

// RunMachines is the machine part of the suite: versions, MAC ownership,
// state compare-and-swap, BMC records, inventories, enrolment and
// timelines.
func RunMachines(t *testing.T, open Open) {
	t.Run("Versions", func(t *testing.T) { testMachineVersions(t, open(t)) })
	t.Run("States", func(t *testing.T) { testMachineStates(t, open(t)) })
	t.Run("BMC", func(t *testing.T) { testMachineBMC(t, open(t)) })
	t.Run("Inventory", func(t *testing.T) { testInventory(t, open(t)) })
	t.Run("Events", func(t *testing.T) { testEvents(t, open(t)) })
	t.Run("TimelineOrder", func(t *testing.T) { testTimelineOrder(t, open(t)) })
	t.Run("Served", func(t *testing.T) { testServed(t, open(t)) })
	t.Run("Audit", func(t *testing.T) { testMachineAudit(t, open(t)) })
}

// RunLeases is the lease-storage part of the suite.
func RunLeases(t *testing.T, open Open) {
	testLeases(t, open)
}

func closeOnCleanup(t *testing.T, s interface{ Close() error }) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// Profile returns a profile object.
func Profile(id string) *store.Object {
	return &store.Object{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: id, Boot: matchbox.Boot{Kernel: "/k/" + id}}}
}

// Group returns a group object.
func Group(id, profile string, sel map[string]string) *store.Object {
	return &store.Object{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: id, Profile: profile, Selector: sel}}
}

// Template returns a template object.
func Template(kind matchbox.Kind, name, content string) *store.Object {
	return &store.Object{Kind: kind, Template: &matchbox.Template{Kind: kind, Name: name, Content: content}}
}

// ign is a valid Ignition config of a version.
func ign(version string) string { return `{"ignition":{"version":"` + version + `"}}` }

func update(ctx context.Context, s store.CatalogStore, fn func(c store.CatalogTx) error) error {
	_, err := s.UpdateCatalog(ctx, fn)
	return err
}

// checkErr reports whether err answers as want does: nil for nil, else
// errors.Is(err, want).
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %v, want one wrapping %v", what, err, want)
	}
}

func testCatalogVersions(t *testing.T, s store.CatalogStore) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	put := func(o *store.Object, ifVersion int64) func(c store.CatalogTx) (int64, error) {
		return func(c store.CatalogTx) (int64, error) { return c.Put(o, ifVersion) }
	}
	remove := func(kind matchbox.Kind, id string, ifVersion int64) func(c store.CatalogTx) (int64, error) {
		return func(c store.CatalogTx) (int64, error) { return 0, c.Delete(kind, id, ifVersion) }
	}
	p2 := Profile("p")
	p2.Profile.Boot.Kernel = "/k/other"
	// Steps run in order on one store, each in its own write transaction.
	steps := []struct {
		name        string
		op          func(c store.CatalogTx) (int64, error)
		wantVersion int64
		wantErr     error
	}{
		{"create if absent", put(Profile("p"), -1), 1, nil},
		{"create if absent again", put(Profile("p"), -1), 0, store.ErrExists},
		{"replace at version 1", put(p2, 1), 2, nil},
		{"replace at stale version 1", put(Profile("p"), 1), 0, store.ErrVersionConflict},
		{"replace at future version", put(Profile("p"), 9), 0, store.ErrVersionConflict},
		{"replace unconditionally", put(Profile("p"), 0), 3, nil},
		{"replace missing at a version", put(Profile("q"), 1), 0, store.ErrNotFound},
		{"create unconditionally", put(Profile("q"), 0), 1, nil},
		{"ignition template", put(Template(matchbox.TemplateIgnition, "t.ign", ign("3.3.0")), -1), 1, nil},
		{"generic template of the same name is another object", put(Template(matchbox.TemplateGeneric, "t.ign", "b"), -1), 1, nil},
		{"ignition template replaced", put(Template(matchbox.TemplateIgnition, "t.ign", ign("3.4.0")), 1), 2, nil},
		{"group", put(Group("g", "p", map[string]string{"mac": "52:54:00:00:00:01"}), -1), 1, nil},
		{"unknown kind", put(&store.Object{Kind: "nonsense"}, 0), 0, errAny},
		{"profile kind without profile", put(&store.Object{Kind: matchbox.KindProfile}, 0), 0, errAny},
		{"delete at stale version", remove(matchbox.KindProfile, "p", 2), 0, store.ErrVersionConflict},
		{"delete missing", remove(matchbox.KindProfile, "nope", 0), 0, store.ErrNotFound},
		{"delete missing at a version", remove(matchbox.KindProfile, "nope", 1), 0, store.ErrNotFound},
		{"delete at version", remove(matchbox.KindProfile, "q", 1), 0, nil},
		{"delete again", remove(matchbox.KindProfile, "q", 0), 0, store.ErrNotFound},
		{"delete one template kind", remove(matchbox.TemplateGeneric, "t.ign", 0), 0, nil},
		{"recreate after delete starts at 1", put(Profile("q"), -1), 1, nil},
	}
	for _, st := range steps {
		var v int64
		err := update(ctx, s, func(c store.CatalogTx) error {
			var err error
			v, err = st.op(c)
			return err
		})
		if st.wantErr == errAny {
			if err == nil {
				t.Errorf("%s: no error", st.name)
			}
			continue
		}
		checkErr(t, st.name, err, st.wantErr)
		if err == nil && v != st.wantVersion {
			t.Errorf("%s: version %d, want %d", st.name, v, st.wantVersion)
		}
	}

	// What the steps leave, read back in a read transaction.
	type row struct {
		Kind    matchbox.Kind
		ID      string
		Version int64
	}
	var got []row
	err := s.ViewCatalog(ctx, func(c store.CatalogTx) error {
		for _, kind := range matchbox.Kinds() {
			objs, err := c.List(kind)
			if err != nil {
				return err
			}
			for _, o := range objs {
				got = append(got, row{o.Kind, o.ID, o.Version})
			}
		}
		p, err := c.Get(matchbox.KindProfile, "p")
		if err != nil {
			return err
		}
		if p.Profile.Boot.Kernel != "/k/p" {
			t.Errorf("profile p kernel %q, want the last write's /k/p", p.Profile.Boot.Kernel)
		}
		tpl, err := c.Get(matchbox.TemplateIgnition, "t.ign")
		if err != nil {
			return err
		}
		if tpl.Template.Content != ign("3.4.0") {
			t.Errorf("ignition template content %q, want the last write's", tpl.Template.Content)
		}
		if _, err := c.Get(matchbox.TemplateGeneric, "t.ign"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted generic template: %v, want not found", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{matchbox.KindProfile, "p", 3},
		{matchbox.KindProfile, "q", 1},
		{matchbox.KindGroup, "g", 1},
		{matchbox.TemplateIgnition, "t.ign", 2},
	}
	sortRows := cmpopts.SortSlices(func(a, b row) bool { return fmt.Sprint(a.Kind, a.ID) < fmt.Sprint(b.Kind, b.ID) })
	if d := cmp.Diff(want, got, sortRows); d != "" {
		t.Errorf("catalog after the steps (-want +got):\n%s", d)
	}
	snap := s.Snapshot()
	if p, ok := snap.Profile("p"); !ok || p.Boot.Kernel != "/k/p" {
		t.Errorf("snapshot profile p = %+v, %v", p, ok)
	}
	if _, ok := snap.Group("g"); !ok {
		t.Error("snapshot lacks group g")
	}
}

// errAny stands for "some error" in step tables.
var errAny = errors.New("any error")

func testCatalogTransactions(t *testing.T, s store.CatalogStore) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	base := []*store.Object{Profile("p"), Group("g1", "p", map[string]string{"mac": "52:54:00:00:00:01"})}
	if err := update(ctx, s, func(c store.CatalogTx) error {
		for _, o := range base {
			if _, err := c.Put(o, -1); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot()
	boom := errors.New("boom")
	cases := []struct {
		name    string
		fn      func(c store.CatalogTx) error
		wantErr error
		// validation: the error must be a *matchbox.ValidationError.
		validation bool
	}{
		{"function fails after writes", func(c store.CatalogTx) error {
			if _, err := c.Put(Profile("new"), -1); err != nil {
				return err
			}
			if err := c.Delete(matchbox.KindGroup, "g1", 0); err != nil {
				return err
			}
			return boom
		}, boom, false},
		{"second write conflicts", func(c store.CatalogTx) error {
			if _, err := c.Put(Profile("new"), -1); err != nil {
				return err
			}
			_, err := c.Put(Profile("p"), 7)
			return err
		}, store.ErrVersionConflict, false},
		{"template refused by the write-time check", func(c store.CatalogTx) error {
			if _, err := c.Put(Profile("new"), -1); err != nil {
				return err
			}
			_, err := c.Put(Template(matchbox.TemplateIgnition, "bad.yaml", "variant: fcos\nversion: 1.5.0\nstorage:\n  filez: []\n"), -1)
			return err
		}, nil, true},
		{"identical selectors", func(c store.CatalogTx) error {
			if _, err := c.Put(Profile("new"), -1); err != nil {
				return err
			}
			_, err := c.Put(Group("g2", "p", map[string]string{"mac": "52-54-00-00-00-01"}), -1)
			return err
		}, nil, true},
	}
	for _, tc := range cases {
		_, err := s.UpdateCatalog(ctx, tc.fn)
		if tc.validation {
			var ve *matchbox.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("%s: error %v, want a *matchbox.ValidationError", tc.name, err)
			}
		} else {
			checkErr(t, tc.name, err, tc.wantErr)
		}
		if s.Snapshot() != before {
			t.Errorf("%s: snapshot replaced by a refused write", tc.name)
		}
		err = s.ViewCatalog(ctx, func(c store.CatalogTx) error {
			if _, err := c.Get(matchbox.KindProfile, "new"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: a write of the refused transaction is stored (%v)", tc.name, err)
			}
			g, err := c.Get(matchbox.KindGroup, "g1")
			if err != nil || g.Version != 1 {
				t.Errorf("%s: group g1 after refused transaction: %+v %v", tc.name, g, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// A transaction reads its own writes; the snapshot it returns is
	// current when UpdateCatalog returns.
	snap, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error {
		if _, err := c.Put(Profile("r"), -1); err != nil {
			return err
		}
		o, err := c.Get(matchbox.KindProfile, "r")
		if err != nil {
			return fmt.Errorf("read own write: %w", err)
		}
		if o.Version != 1 {
			return fmt.Errorf("own write at version %d", o.Version)
		}
		return c.Delete(matchbox.KindGroup, "g1", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap != s.Snapshot() {
		t.Error("UpdateCatalog's snapshot is not the current one")
	}
	if _, ok := snap.Profile("r"); !ok {
		t.Error("new snapshot lacks profile r")
	}
	if _, ok := snap.Group("g1"); ok {
		t.Error("new snapshot keeps deleted group g1")
	}
	if _, ok := before.Group("g1"); !ok {
		t.Error("an earlier snapshot changed: snapshots must be immutable")
	}
}

func testImport(t *testing.T, s store.CatalogStore) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	files := []*store.Object{Profile("p"), Group("default", "p", nil), Group("m1", "p", map[string]string{"mac": "52:54:00:00:00:01"})}
	for _, o := range files {
		o.Source = "profiles-and-groups/" + string(o.Kind)
	}
	if err := update(ctx, s, func(c store.CatalogTx) error { _, err := c.Put(Profile("api-made"), -1); return err }); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		objs    []*store.Object
		want    store.ImportResult
		wantErr bool
	}{
		{"first import", files, store.ImportResult{Created: 3}, false},
		{"same again", files, store.ImportResult{Unchanged: 3}, false},
		{"identical selectors refused whole", append(files[:3:3], Group("m1-again", "p", map[string]string{"mac": "52-54-00-00-00-01"})), store.ImportResult{}, true},
		{"a new dangling reference refused", append(files[:3:3], Group("dangles", "missing", map[string]string{"mac": "52:54:00:00:00:09"})), store.ImportResult{}, true},
		{"a file's object gone", files[:2], store.ImportResult{Unchanged: 2, Deleted: 1}, false},
	}
	for _, st := range steps {
		before := s.Snapshot()
		res, snap, err := s.Import(ctx, "dir-a", st.objs)
		if st.wantErr {
			if err == nil {
				t.Errorf("%s: no error", st.name)
			}
			if s.Snapshot() != before {
				t.Errorf("%s: refused import replaced the snapshot", st.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", st.name, err)
			continue
		}
		if d := cmp.Diff(st.want, res); d != "" {
			t.Errorf("%s: result (-want +got):\n%s", st.name, d)
		}
		if snap != s.Snapshot() {
			t.Errorf("%s: returned snapshot is not current", st.name)
		}
	}
	snap := s.Snapshot()
	if _, ok := snap.Profile("api-made"); !ok {
		t.Error("import deleted an object written through the API")
	}
	if _, ok := snap.Group("m1"); ok {
		t.Error("group m1, no longer in any file, still there")
	}
	if _, ok := snap.Group("m1-again"); ok {
		t.Error("group of a refused import stored")
	}
	err := s.ViewCatalog(ctx, func(c store.CatalogTx) error {
		o, err := c.Get(matchbox.KindProfile, "p")
		if err != nil {
			return err
		}
		if o.Source != files[0].Source {
			t.Errorf("imported profile source %q, want %q", o.Source, files[0].Source)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testImportScopes: two data directories (scopes) importing into one
// store never delete each other's objects; an object imported before
// scopes is adopted by the import that provides it; an object another
// scope provides identically keeps its scope.
func testImportScopes(t *testing.T, s store.CatalogStore) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	from := func(src string, objs ...*store.Object) []*store.Object {
		for _, o := range objs {
			o.Source = src
		}
		return objs
	}
	// An object imported before scopes: a source, no scope.
	if err := update(ctx, s, func(c store.CatalogTx) error {
		_, err := c.Put(from("profiles/old.json", Profile("old"))[0], -1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a := from("profiles/a.json", Profile("a"), Profile("shared"))
	b := from("profiles/b.json", Profile("b"))
	steps := []struct {
		name, scope string
		objs        []*store.Object
		want        store.ImportResult
	}{
		{"a imports (the object from before scopes is not in its files)", "host-a:/var/lib/matchbox", a, store.ImportResult{Created: 2, Deleted: 1}},
		{"b imports other objects", "host-b:/var/lib/matchbox", b, store.ImportResult{Created: 1}},
		{"a again: b's objects stay", "host-a:/var/lib/matchbox", a, store.ImportResult{Unchanged: 2}},
		{"b provides a's object identically: a keeps it", "host-b:/var/lib/matchbox", append(b[:1:1], from("profiles/a.json", Profile("shared"))...), store.ImportResult{Unchanged: 2}},
		{"b's directory emptied: only b's object goes", "host-b:/var/lib/matchbox", nil, store.ImportResult{Deleted: 1}},
	}
	for _, st := range steps {
		res, _, err := s.Import(ctx, st.scope, st.objs)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if d := cmp.Diff(st.want, res); d != "" {
			t.Errorf("%s: result (-want +got):\n%s", st.name, d)
		}
	}
	snap := s.Snapshot()
	for id, want := range map[string]bool{"old": false, "a": true, "shared": true, "b": false} {
		if _, ok := snap.Profile(id); ok != want {
			t.Errorf("profile %q present %v, want %v", id, ok, want)
		}
	}
	err := s.ViewCatalog(ctx, func(c store.CatalogTx) error {
		o, err := c.Get(matchbox.KindProfile, "shared")
		if err != nil {
			return err
		}
		if o.Scope != "host-a:/var/lib/matchbox" {
			t.Errorf("profile shared has scope %q, want a's", o.Scope)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testMachineVersions(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	m := func(id string, macs ...string) *matchbox.Machine {
		return &matchbox.Machine{ID: id, MACs: macs, Labels: map[string]string{"rack": "r1"}}
	}
	steps := []struct {
		name        string
		m           *matchbox.Machine
		ifVersion   int64
		wantVersion int64
		wantErr     error
	}{
		{"create if absent", m("m1", "52-54-00-00-00-01"), -1, 1, nil},
		{"create if absent again", m("m1"), -1, 0, store.ErrExists},
		{"replace at version", m("m1", "52:54:00:00:00:01", "52:54:00:00:00:02"), 1, 2, nil},
		{"replace at stale version", m("m1"), 1, 0, store.ErrVersionConflict},
		{"replace missing at a version", m("m2"), 3, 0, store.ErrNotFound},
		{"another machine may not take a MAC", m("m2", "52:54:00:00:00:02"), -1, 0, store.ErrExists},
		{"another machine with its own MAC", m("m2", "52:54:00:00:00:03"), 0, 1, nil},
		{"bad id", m("../x"), 0, 0, errAny},
		{"bad MAC", m("m3", "not-a-mac"), 0, 0, errAny},
		{"bad state", &matchbox.Machine{ID: "m3", State: "flying"}, 0, 0, errAny},
	}
	for _, st := range steps {
		v, err := s.PutMachine(ctx, st.m, st.ifVersion)
		if st.wantErr == errAny {
			if err == nil {
				t.Errorf("%s: no error", st.name)
			}
			continue
		}
		checkErr(t, st.name, err, st.wantErr)
		if err == nil && v != st.wantVersion {
			t.Errorf("%s: version %d, want %d", st.name, v, st.wantVersion)
		}
	}
	got, v, err := s.Machine(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if v != 2 || got.State != matchbox.StateDiscovered || got.Labels["rack"] != "r1" {
		t.Errorf("m1 = %+v at version %d", got, v)
	}
	if d := cmp.Diff([]string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, got.MACs); d != "" {
		t.Errorf("m1 MACs (-want +got):\n%s", d)
	}
	if id, err := s.MachineIDByMAC(ctx, "52:54:00:00:00:02"); err != nil || id != "m1" {
		t.Errorf("MachineIDByMAC = %q, %v", id, err)
	}
	if _, err := s.MachineIDByMAC(ctx, "52:54:00:00:00:99"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MachineIDByMAC of an unknown MAC: %v", err)
	}
	if im, ok := s.LookupMachine("52:54:00:00:00:02", ""); !ok || im.ID != "m1" {
		t.Errorf("LookupMachine = %+v, %v", im, ok)
	}
	if im, ok := s.LookupMachineByID("m2"); !ok || im.ID != "m2" {
		t.Errorf("LookupMachineByID = %+v, %v", im, ok)
	}
	list, err := s.ListMachines(ctx, store.MachineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if d := cmp.Diff([]string{"m1", "m2"}, ids); d != "" {
		t.Errorf("ListMachines (-want +got):\n%s", d)
	}
	if list, err := s.ListMachines(ctx, store.MachineFilter{After: "m1", Limit: 1}); err != nil || len(list) != 1 || list[0].ID != "m2" {
		t.Errorf("ListMachines after m1: %v %v", list, err)
	}

	// EnsureMachine: a known MAC answers its machine, a new one creates.
	if id, created, err := s.EnsureMachine(ctx, "52:54:00:00:00:03", ""); err != nil || id != "m2" || created {
		t.Errorf("EnsureMachine(known) = %q %v %v", id, created, err)
	}
	id, created, err := s.EnsureMachine(ctx, "52:54:00:00:00:04", "")
	if err != nil || !created || id != store.MachineIDFromMAC("52:54:00:00:00:04") {
		t.Errorf("EnsureMachine(new) = %q %v %v", id, created, err)
	}

	// Deletes.
	dels := []struct {
		name      string
		id        string
		ifVersion int64
		wantErr   error
	}{
		{"delete at stale version", "m1", 1, store.ErrVersionConflict},
		{"delete missing", "nope", 0, store.ErrNotFound},
		{"delete at version", "m1", 2, nil},
		{"delete again", "m1", 0, store.ErrNotFound},
	}
	for _, d := range dels {
		checkErr(t, d.name, s.DeleteMachine(ctx, d.id, d.ifVersion), d.wantErr)
	}
	if _, ok := s.LookupMachine("52:54:00:00:00:01", ""); ok {
		t.Error("deleted machine's MAC still found in memory")
	}
	if _, err := s.MachineIDByMAC(ctx, "52:54:00:00:00:01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted machine's MAC still stored: %v", err)
	}
	if v, err := s.PutMachine(ctx, m("m4", "52:54:00:00:00:01"), -1); err != nil || v != 1 {
		t.Errorf("a deleted machine's MAC is free again: %d %v", v, err)
	}
}

func testMachineStates(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m"}, -1); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		id      string
		to      matchbox.MachineState
		from    []matchbox.MachineState
		wantErr error
		want    matchbox.MachineState
	}{
		{"from the wrong state", "m", matchbox.StateProvisioning, []matchbox.MachineState{matchbox.StateReady}, store.ErrVersionConflict, matchbox.StateDiscovered},
		{"from one of the states", "m", matchbox.StateReady, []matchbox.MachineState{matchbox.StateFailed, matchbox.StateDiscovered}, nil, matchbox.StateReady},
		{"unconditionally", "m", matchbox.StateProvisioning, nil, nil, matchbox.StateProvisioning},
		{"compare-and-swap loses once moved", "m", matchbox.StateProvisioning, []matchbox.MachineState{matchbox.StateReady}, store.ErrVersionConflict, matchbox.StateProvisioning},
		{"unknown machine", "nope", matchbox.StateReady, nil, store.ErrNotFound, ""},
		{"unknown state", "m", "flying", nil, errAny, matchbox.StateProvisioning},
	}
	for _, st := range steps {
		_, v0, _ := s.Machine(ctx, st.id)
		err := s.SetMachineState(ctx, st.id, st.to, st.from...)
		if st.wantErr == errAny {
			if err == nil {
				t.Errorf("%s: no error", st.name)
			}
		} else {
			checkErr(t, st.name, err, st.wantErr)
		}
		if st.want == "" {
			continue
		}
		m, v, err2 := s.Machine(ctx, st.id)
		if err2 != nil {
			t.Fatal(err2)
		}
		if m.State != st.want {
			t.Errorf("%s: state %s, want %s", st.name, m.State, st.want)
		}
		if im, _ := s.LookupMachineByID(st.id); im.State != st.want {
			t.Errorf("%s: in-memory state %s, want %s", st.name, im.State, st.want)
		}
		if (err == nil) != (v > v0) {
			t.Errorf("%s: version %d → %d", st.name, v0, v)
		}
	}

	// Enroll: discovered or failed → ready; other states stay.
	enrolls := []struct {
		start, want matchbox.MachineState
	}{
		{matchbox.StateDiscovered, matchbox.StateReady},
		{matchbox.StateFailed, matchbox.StateReady},
		{matchbox.StateProvisioning, matchbox.StateProvisioning},
	}
	for _, e := range enrolls {
		if err := s.SetMachineState(ctx, "m", e.start); err != nil {
			t.Fatal(err)
		}
		got, err := s.Enroll(ctx, "m", "g1")
		if err != nil || got != e.want {
			t.Errorf("Enroll from %s = %s, %v; want %s", e.start, got, err, e.want)
		}
		if m, _, _ := s.Machine(ctx, "m"); m.Group != "g1" {
			t.Errorf("Enroll from %s: group %q", e.start, m.Group)
		}
	}
	if _, err := s.Enroll(ctx, "nope", "g1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Enroll of an unknown machine: %v", err)
	}
}

func testMachineBMC(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m"}, -1); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		id      string
		record  string
		wantErr error
		want    string
	}{
		{"set", "m", "sealed-1", nil, "sealed-1"},
		{"replace", "m", "sealed-2", nil, "sealed-2"},
		{"remove", "m", "", nil, ""},
		{"unknown machine", "nope", "x", store.ErrNotFound, ""},
	}
	for _, st := range steps {
		checkErr(t, st.name, s.SetMachineBMC(ctx, st.id, st.record), st.wantErr)
		got, err := s.MachineBMC(ctx, st.id)
		checkErr(t, st.name+": read", err, st.wantErr)
		if got != st.want {
			t.Errorf("%s: record %q, want %q", st.name, got, st.want)
		}
	}
	// PutMachine does not touch the BMC record.
	if err := s.SetMachineBMC(ctx, "m", "sealed-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", Hostname: "h"}, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MachineBMC(ctx, "m"); got != "sealed-3" {
		t.Errorf("BMC record after PutMachine: %q", got)
	}
}

func testInventory(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	inv := func(mem uint64, at int64) hardware.Inventory {
		return hardware.Inventory{
			System:      hardware.System{UUID: "4c4c4544-0000-1000-8000-000000000001", Serial: "SN1"},
			NICs:        []hardware.NIC{{Name: "eno1", MAC: "52:54:00:00:00:0a"}},
			CollectedAt: time.Unix(at, 0).UTC(),
			Memory:      hardware.Memory{Bytes: mem},
		}
	}
	steps := []struct {
		name        string
		inv         hardware.Inventory
		wantChanged bool
		wantReports int
	}{
		{"first report creates the machine", inv(1<<30, 100), true, 1},
		{"same facts later: no new report", inv(1<<30, 200), false, 1},
		{"changed facts", inv(2<<30, 300), true, 2},
	}
	for _, st := range steps {
		changed, err := s.RecordInventory(ctx, "m", st.inv)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed != st.wantChanged {
			t.Errorf("%s: changed %v, want %v", st.name, changed, st.wantChanged)
		}
		h, err := s.InventoryHistory(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != st.wantReports {
			t.Errorf("%s: %d reports, want %d", st.name, len(h), st.wantReports)
		}
	}
	m, _, err := s.Machine(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if m.Serial != "SN1" || m.UUID == "" || len(m.MACs) != 1 || m.MACs[0] != "52:54:00:00:00:0a" {
		t.Errorf("machine from inventory: %+v", m)
	}
	im, ok := s.LookupMachine("52:54:00:00:00:0a", "")
	if !ok || im.Inventory == nil || im.Inventory.Memory.Bytes != 2<<30 {
		t.Errorf("in-memory machine lacks the latest inventory: %+v %v", im, ok)
	}
	if _, err := s.RecordInventory(ctx, "../bad", inv(1, 1)); err == nil {
		t.Error("bad machine id accepted")
	}
	if err := s.DeleteMachine(ctx, "m", 0); err != nil {
		t.Fatal(err)
	}
	if h, err := s.InventoryHistory(ctx, "m"); err != nil || len(h) != 0 {
		t.Errorf("inventory history after delete: %d reports, %v", len(h), err)
	}
}

func testEvents(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	const mac = "52:54:00:00:00:01"
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", MACs: []string{mac}}, -1); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0).UTC()
	evs := []matchbox.BootEvent{
		{MachineID: "m", Type: "dhcp.discover", At: t0},
		{MAC: mac, Type: "dhcp.ack", At: t0.Add(time.Second)},
		{MachineID: "m", Type: "http.ipxe", At: t0.Add(2 * time.Second)},
	}
	if err := s.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	types := func(es []matchbox.Event) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Type)
		}
		return out
	}
	all, err := s.Events(ctx, "m", store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	filters := []struct {
		name string
		f    store.EventFilter
		want []string
	}{
		{"all", store.EventFilter{}, []string{"dhcp.discover", "dhcp.ack", "http.ipxe"}},
		{"type prefix", store.EventFilter{Type: "dhcp."}, []string{"dhcp.discover", "dhcp.ack"}},
		{"exact type", store.EventFilter{Type: "http.ipxe"}, []string{"http.ipxe"}},
		{"since", store.EventFilter{Since: t0.Add(time.Second)}, []string{"dhcp.ack", "http.ipxe"}},
		{"limit", store.EventFilter{Limit: 1}, []string{"dhcp.discover"}},
	}
	if len(all) == 3 {
		filters = append(filters, struct {
			name string
			f    store.EventFilter
			want []string
		}{"after id", store.EventFilter{AfterID: all[0].ID}, []string{"dhcp.ack", "http.ipxe"}})
	}
	for _, tc := range filters {
		got, err := s.Events(ctx, "m", tc.f)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, types(got)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	for _, e := range all {
		if e.MachineID != "m" {
			t.Errorf("event %+v on machine %q", e, e.MachineID)
		}
	}

	// Discovering: an event of an unknown MAC creates its machine.
	const newMAC = "52:54:00:00:00:02"
	if err := s.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{{MAC: newMAC, Type: "dhcp.discover", At: t0}}); err != nil {
		t.Fatal(err)
	}
	id, err := s.MachineIDByMAC(ctx, newMAC)
	if err != nil {
		t.Fatalf("discovered machine: %v", err)
	}
	if got, err := s.Events(ctx, id, store.EventFilter{}); err != nil || len(got) != 1 {
		t.Errorf("discovered machine's timeline: %v %v", types(got), err)
	}
	if err := s.DeleteMachine(ctx, "m", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Events(ctx, "m", store.EventFilter{}); err != nil || len(got) != 0 {
		t.Errorf("timeline after delete: %v %v", types(got), err)
	}
}

// testServed: a boot event answered 2xx with a group records the group
// and profile in its machine's record (a new machine's too), the last of a
// batch winning; failures and events without a group leave it; the
// machine's version stays.
func testServed(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	const mac, newMAC = "52:54:00:00:00:01", "52:54:00:00:00:02"
	v0, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", MACs: []string{mac}}, -1)
	if err != nil {
		t.Fatal(err)
	}
	served := func(id string) [2]string {
		t.Helper()
		m, _, err := s.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return [2]string{m.ServedGroup, m.ServedProfile}
	}
	ok := func(g, p string) matchbox.Outcome { return matchbox.Outcome{Status: 200, Group: g, Profile: p} }
	steps := []struct {
		name string
		evs  []matchbox.BootEvent
		want [2]string
	}{
		{"no group: nothing served", []matchbox.BootEvent{{MachineID: "m", Type: "dhcp.ack"}}, [2]string{}},
		{"served by id", []matchbox.BootEvent{{MachineID: "m", Type: "http.ipxe", Outcome: ok("workers", "install")}}, [2]string{"workers", "install"}},
		{"a 404 and a 500 change nothing", []matchbox.BootEvent{
			{MAC: mac, Type: "http.ipxe", Outcome: matchbox.Outcome{Status: 404, Group: "orphan", Error: "profile missing"}},
			{MAC: mac, Type: "http.ignition", Outcome: matchbox.Outcome{Status: 500, Group: "rescue", Profile: "rescue", Error: "render"}},
		}, [2]string{"workers", "install"}},
		{"the last of a batch wins", []matchbox.BootEvent{
			{MAC: mac, Type: "http.ipxe", Outcome: ok("rescue", "rescue")},
			{MAC: mac, Type: "http.ignition", Outcome: ok("workers", "install-2")},
		}, [2]string{"workers", "install-2"}},
	}
	for _, st := range steps {
		if err := s.AppendEvents(ctx, st.evs); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := served("m"); got != st.want {
			t.Errorf("%s: served %v, want %v", st.name, got, st.want)
		}
	}
	if _, v, err := s.Machine(ctx, "m"); err != nil || v != v0 {
		t.Errorf("version %d after boot events (was %d), %v", v, v0, err)
	}
	// A client's replace neither sets nor clears it.
	m, v, err := s.Machine(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	m.ServedGroup, m.ServedProfile = "forged", "forged"
	if _, err := s.PutMachine(ctx, m, v); err != nil {
		t.Fatal(err)
	}
	if got := served("m"); got != [2]string{"workers", "install-2"} {
		t.Errorf("after a replace: served %v", got)
	}
	if err := s.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{{MAC: newMAC, Type: "http.ipxe", Outcome: ok("workers", "install")}}); err != nil {
		t.Fatal(err)
	}
	id, err := s.MachineIDByMAC(ctx, newMAC)
	if err != nil {
		t.Fatal(err)
	}
	if got := served(id); got != [2]string{"workers", "install"} {
		t.Errorf("a new machine's first request: served %v", got)
	}
	// SetMachineServed (store copy) records it, in memory too, and keeps
	// the version.
	_, v1, err := s.Machine(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMachineServed(ctx, "m", "copied", "copied-p"); err != nil {
		t.Fatal(err)
	}
	if got := served("m"); got != [2]string{"copied", "copied-p"} {
		t.Errorf("after SetMachineServed: served %v", got)
	}
	if m, ok := s.LookupMachineByID("m"); !ok || m.ServedGroup != "copied" || m.ServedProfile != "copied-p" {
		t.Errorf("after SetMachineServed: in memory %q/%q", m.ServedGroup, m.ServedProfile)
	}
	if _, v, err := s.Machine(ctx, "m"); err != nil || v != v1 {
		t.Errorf("version %d after SetMachineServed (was %d), %v", v, v1, err)
	}
	if err := s.SetMachineServed(ctx, "absent", "g", "p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetMachineServed of no machine: %v, want ErrNotFound", err)
	}
}

// testTimelineOrder: a machine's timeline is ordered by time, then id,
// whatever order the events were written in (the recorder writes a
// request's event after an action the request led to), and its cursors
// (AfterID, Newest, Since) follow that order; Written keeps the order of
// writing for following a timeline live.
func testTimelineOrder(t *testing.T, s store.Backend) {
	closeOnCleanup(t, s)
	ctx := context.Background()
	if _, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}}, 0); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// Written in this order; times chosen so that id order, string order
	// of RFC 3339 times ("05Z" sorts after "05.5Z") and time order differ.
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
	types := func(f store.EventFilter) []string {
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
	all, err := s.Events(ctx, "m1", store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var b store.EventFilter
	for _, e := range all {
		if e.Type == "b" {
			b.AfterID = e.ID
		}
	}
	tests := []struct {
		name string
		f    store.EventFilter
		want []string
	}{
		{"all", store.EventFilter{}, []string{"a", "b", "b2", "c", "d"}},
		{"limit", store.EventFilter{Limit: 2}, []string{"a", "b"}},
		{"newest", store.EventFilter{Limit: 2, Newest: true}, []string{"c", "d"}},
		{"after b", store.EventFilter{AfterID: b.AfterID}, []string{"b2", "c", "d"}},
		{"since", store.EventFilter{Since: t0.Add(500 * time.Millisecond)}, []string{"b", "b2", "c", "d"}},
		{"as written", store.EventFilter{Written: true}, []string{"c", "a", "b", "b2", "d"}},
		{"as written after b", store.EventFilter{Written: true, AfterID: b.AfterID}, []string{"b2", "d"}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, types(tc.f)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func lease(ip, mac string, state dhcp.LeaseState) dhcp.Lease {
	return dhcp.Lease{IP: netip.MustParseAddr(ip), MAC: mac, Hostname: "h", Expires: time.Unix(1_800_000_000, 0).UTC(), State: state}
}

func put(l dhcp.Lease) dhcp.LeaseWrite { return dhcp.LeaseWrite{Lease: l} }

func del(ip, mac string) dhcp.LeaseWrite {
	return dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr(ip), MAC: mac}, Delete: true}
}

func testLeases(t *testing.T, open Open) {
	const m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	tests := []struct {
		name    string
		batches [][]dhcp.LeaseWrite
		wantErr []bool // per batch
		want    []dhcp.Lease
	}{
		{
			name:    "put and replace on one address",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseOffered))}, {put(lease("10.0.0.10", m1, dhcp.LeaseBound))}},
			wantErr: []bool{false, false},
			want:    []dhcp.Lease{lease("10.0.0.10", m1, dhcp.LeaseBound)},
		},
		{
			name:    "a second live lease of one MAC is refused",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseBound))}, {put(lease("10.0.0.11", m2, dhcp.LeaseBound)), put(lease("10.0.0.12", m1, dhcp.LeaseBound))}},
			wantErr: []bool{false, true},
			want:    []dhcp.Lease{lease("10.0.0.10", m1, dhcp.LeaseBound)},
		},
		{
			name:    "a move is a delete and a put in one batch",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseBound))}, {del("10.0.0.10", m1), put(lease("10.0.0.12", m1, dhcp.LeaseBound))}},
			wantErr: []bool{false, false},
			want:    []dhcp.Lease{lease("10.0.0.12", m1, dhcp.LeaseBound)},
		},
		{
			name:    "declined leases do not count as the MAC's lease",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseDeclined)), put(lease("10.0.0.11", m1, dhcp.LeaseBound))}},
			wantErr: []bool{false},
			want:    []dhcp.Lease{lease("10.0.0.10", m1, dhcp.LeaseDeclined), lease("10.0.0.11", m1, dhcp.LeaseBound)},
		},
		{
			name:    "deleting another MAC's lease is a no-op",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseBound))}, {del("10.0.0.10", m2)}},
			wantErr: []bool{false, false},
			want:    []dhcp.Lease{lease("10.0.0.10", m1, dhcp.LeaseBound)},
		},
		{
			name:    "put replaces whatever lease the address had",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.10", m1, dhcp.LeaseReleased))}, {put(lease("10.0.0.10", m2, dhcp.LeaseOffered))}},
			wantErr: []bool{false, false},
			want:    []dhcp.Lease{lease("10.0.0.10", m2, dhcp.LeaseOffered)},
		},
		{
			name:    "ordered by address text",
			batches: [][]dhcp.LeaseWrite{{put(lease("10.0.0.9", m1, dhcp.LeaseBound)), put(lease("10.0.0.10", m2, dhcp.LeaseBound))}},
			wantErr: []bool{false},
			want:    []dhcp.Lease{lease("10.0.0.10", m2, dhcp.LeaseBound), lease("10.0.0.9", m1, dhcp.LeaseBound)},
		},
	}
	equateAddrs := cmpopts.EquateComparable(netip.Addr{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			closeOnCleanup(t, s)
			ctx := context.Background()
			for i, b := range tc.batches {
				err := s.CommitLeases(ctx, b)
				if (err != nil) != tc.wantErr[i] {
					t.Fatalf("batch %d: err = %v, want error %v", i, err, tc.wantErr[i])
				}
			}
			got, err := s.LoadLeases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, equateAddrs); d != "" {
				t.Errorf("leases (-want +got):\n%s", d)
			}
			for _, l := range tc.want {
				one, ok, err := s.LeaseByIP(ctx, l.IP)
				if err != nil || !ok {
					t.Errorf("LeaseByIP(%s) = %v %v", l.IP, ok, err)
					continue
				}
				if d := cmp.Diff(l, one, equateAddrs); d != "" {
					t.Errorf("LeaseByIP(%s) (-want +got):\n%s", l.IP, d)
				}
			}
			if _, ok, err := s.LeaseByIP(ctx, netip.MustParseAddr("10.9.9.9")); ok || err != nil {
				t.Errorf("LeaseByIP of a free address = %v %v", ok, err)
			}
		})
	}
}
