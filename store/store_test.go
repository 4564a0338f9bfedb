package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"matchbox/matchbox"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "matchbox.db")
	s, err := Open(context.Background(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func profileObj(id string) *Object {
	return &Object{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: id, Boot: matchbox.Boot{Kernel: "/k"}}}
}

func groupObj(id, profile string, sel map[string]string) *Object {
	return &Object{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: id, Profile: profile, Selector: sel}}
}

func TestImportIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	good := []*Object{profileObj("p"), groupObj("default", "p", nil), groupObj("m1", "p", map[string]string{"mac": "52:54:00:00:00:01"})}
	for _, o := range good {
		o.Source = "files/" + string(o.Kind)
	}
	res, snap, err := s.Import(ctx, "test", good)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 3 || snap != s.Snapshot() {
		t.Fatalf("import: %+v", res)
	}
	// A second import with an identical-selector group: refused, nothing stored.
	bad := append(good, groupObj("m1-again", "p", map[string]string{"mac": "52-54-00-00-00-01"}), profileObj("new-profile"))
	_, _, err = s.Import(ctx, "test", bad)
	if err == nil || !strings.Contains(err.Error(), `groups "m1" and "m1-again" have identical selectors`) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := s.Snapshot().Profile("new-profile"); ok {
		t.Fatal("snapshot changed by a refused import")
	}
	err = s.ViewCatalog(ctx, func(c CatalogTx) error {
		ps, err := c.List(matchbox.KindProfile)
		if len(ps) != 1 {
			t.Errorf("profiles after refused import: %d", len(ps))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Re-import unchanged, then drop a file: its object is deleted, API objects stay.
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(profileObj("api-made"), -1); return err }); err != nil {
		t.Fatal(err)
	}
	res, _, err = s.Import(ctx, "test", good)
	if err != nil || res.Unchanged != 3 {
		t.Fatalf("re-import: %+v %v", res, err)
	}
	res, snap, err = s.Import(ctx, "test", good[:2])
	if err != nil || res.Deleted != 1 {
		t.Fatalf("import without m1: %+v %v", res, err)
	}
	if _, ok := snap.Group("m1"); ok {
		t.Fatal("m1 still there")
	}
	if _, ok := snap.Profile("api-made"); !ok {
		t.Fatal("an object written through the API was deleted by an import")
	}
}

func TestCatalogVersions(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	put := func(o *Object, ifv int64) (int64, error) {
		var v int64
		_, err := s.UpdateCatalog(ctx, func(c CatalogTx) error {
			var err error
			v, err = c.Put(o, ifv)
			return err
		})
		return v, err
	}
	if v, err := put(profileObj("p"), -1); err != nil || v != 1 {
		t.Fatalf("create: %d %v", v, err)
	}
	if _, err := put(profileObj("p"), -1); !errors.Is(err, ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
	if v, err := put(profileObj("p"), 1); err != nil || v != 2 {
		t.Fatalf("update at 1: %d %v", v, err)
	}
	if _, err := put(profileObj("p"), 1); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := put(profileObj("q"), 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	// A dangling reference is stored and reported; an import that would add
	// one is refused.
	if _, err := put(groupObj("g", "missing", nil), 0); err != nil {
		t.Fatalf("dangling group: %v", err)
	}
	if d := s.Snapshot().Dangling(); len(d) != 1 || !strings.Contains(d[0], `profile "missing" does not exist`) {
		t.Fatalf("dangling references after a dangling group: %q", d)
	}
	if _, _, err := s.Import(ctx, "test", []*Object{groupObj("h", "absent", map[string]string{"os": "x"})}); err == nil || !strings.Contains(err.Error(), `group "h": profile "absent" does not exist`) {
		t.Fatalf("import of a dangling group: %v", err)
	}
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { return c.Delete(matchbox.KindGroup, "g", 0) }); err != nil {
		t.Fatal(err)
	}
	tmpl := &Object{Kind: matchbox.TemplateIgnition, Template: &matchbox.Template{Kind: matchbox.TemplateIgnition, Name: "a.ign", Content: `{"ignition":{"version":"3.3.0"}}`}}
	if _, err := put(tmpl, 0); err != nil {
		t.Fatal(err)
	}
	tmpl.Template.Content = `{"ignition":{"version":"nope"}}`
	if _, err := put(tmpl, 0); err == nil || !strings.Contains(err.Error(), "invalid Ignition config") {
		t.Fatalf("invalid ignition stored: %v", err)
	}
	_, err := s.UpdateCatalog(ctx, func(c CatalogTx) error { return c.Delete(matchbox.KindProfile, "p", 1) })
	if !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	_, err = s.UpdateCatalog(ctx, func(c CatalogTx) error { return c.Delete(matchbox.KindProfile, "p", 2) })
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateCatalog(ctx, func(c CatalogTx) error { return c.Delete(matchbox.KindProfile, "p", 0) })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestMachinesEventsAndReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	rec := NewRecorder(s, RecorderConfig{Discover: true})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rec.Run(rctx); close(done) }()
	rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "dhcp.discover"})
	rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", UUID: "u1", Type: "http.ipxe", Detail: map[string]any{"group": "g"}})
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := s.MachineIDByMAC(ctx, "52:54:00:00:00:01")
	if err != nil || id != "52-54-00-00-00-01" {
		t.Fatalf("machine by MAC: %q %v", id, err)
	}
	sum, ok := s.LookupMachine("52:54:00:00:00:01", "")
	if !ok || sum.State != matchbox.StateDiscovered {
		t.Fatalf("index: %+v %v", sum, ok)
	}
	evs, err := s.Events(ctx, id, EventFilter{})
	if err != nil || len(evs) != 2 || evs[1].Detail["group"] != "g" {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if evs, _ := s.Events(ctx, id, EventFilter{Type: "http."}); len(evs) != 1 {
		t.Fatalf("prefix filter: %+v", evs)
	}
	if evs, _ := s.FleetEvents(ctx, EventFilter{Type: "dhcp."}); len(evs) != 1 || evs[0].MachineID != id {
		t.Fatalf("fleet events of type dhcp.: %+v", evs)
	}
	if evs, _ := s.Events(ctx, "another", EventFilter{}); len(evs) != 0 {
		t.Fatalf("events of a machine without any: %+v", evs)
	}
	if evs, _ := s.Events(ctx, id, EventFilter{Newest: true, Limit: 1}); len(evs) != 1 || evs[0].Type != "http.ipxe" || evs[0].MachineID != id {
		t.Fatalf("newest event: %+v", evs)
	}
	if evs, _ := s.Events(ctx, id, EventFilter{Newest: true, Limit: 5}); len(evs) != 2 || evs[0].Type != "dhcp.discover" {
		t.Fatalf("newest events, oldest first: %+v", evs)
	}
	m, v, err := s.Machine(ctx, id)
	if err != nil || m.UUID != "u1" || v != 1 {
		t.Fatalf("machine: %+v v%d %v", m, v, err)
	}
	m.Labels = map[string]string{"rack": "r1"}
	m.MACs = append(m.MACs, "52-54-00-00-00-02")
	if _, err := s.PutMachine(ctx, m, v); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMachine(ctx, m, v); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale machine write: %v", err)
	}
	other := &matchbox.Machine{ID: "other", MACs: []string{"52:54:00:00:00:02"}}
	if _, err := s.PutMachine(ctx, other, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("MAC stolen: %v", err)
	}
	if err := s.SetMachineState(ctx, id, matchbox.StateProvisioned, matchbox.StateProvisioning); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("transition from the wrong state: %v", err)
	}
	if err := s.SetMachineState(ctx, id, matchbox.StateProvisioning); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountMachinesByState(ctx); err != nil || n[matchbox.StateProvisioning] != 1 || len(n) != 1 {
		t.Fatalf("counts by state: %v %v", n, err)
	}
	if sum, _ := s.LookupMachine("52:54:00:00:00:02", ""); sum.State != matchbox.StateProvisioning || sum.Labels["rack"] != "r1" {
		t.Fatalf("index after writes: %+v", sum)
	}
	list, err := s.ListMachines(ctx, MachineFilter{Label: map[string]string{"rack": "r1"}})
	if err != nil || len(list) != 1 || len(list[0].MACs) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	cancel()
	<-done
	s.Close()

	s2, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if sum, ok := s2.LookupMachine("", "u1"); !ok || sum.ID != id || sum.State != matchbox.StateProvisioning {
		t.Fatalf("after reopen: %+v %v", sum, ok)
	}
	if err := s2.DeleteMachine(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.LookupMachine("52:54:00:00:00:01", ""); ok {
		t.Fatal("deleted machine still indexed")
	}
	if evs, _ := s2.Events(ctx, id, EventFilter{}); len(evs) != 0 {
		t.Fatal("events of a deleted machine remain")
	}
}

func TestRecorderDropsWhenFull(t *testing.T) {
	s, _ := openTest(t)
	rec := NewRecorder(s, RecorderConfig{Queue: 2, Discover: true})
	for i := 0; i < 5; i++ {
		rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "x", At: time.Now()})
	}
	if rec.Dropped() != 3 {
		t.Fatalf("dropped %d, want 3", rec.Dropped())
	}
}

// lockedBuffer is a log destination safe for the recorder's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRecorderLogsDropsOncePerInterval: a recorder with a one-event queue
// drops a burst, and says so in one warning per interval with the count,
// and not again while nothing more is dropped.
func TestRecorderLogsDropsOncePerInterval(t *testing.T) {
	s, _ := openTest(t)
	logs := &lockedBuffer{}
	const interval = 200 * time.Millisecond
	rec := NewRecorder(s, RecorderConfig{Queue: 1, Discover: true, DropLogInterval: interval,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	burst := func(n int) {
		for i := 0; i < n; i++ {
			rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "x", At: time.Now()})
		}
	}
	burst(100) // the recorder is not running yet: 1 queued, 99 dropped
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	warnings := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "boot events dropped") {
				out = append(out, l)
			}
		}
		return out
	}
	waitFor := func(n int) []string {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(warnings()) < n && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		return warnings()
	}
	if w := waitFor(1); len(w) != 1 || !strings.Contains(w[0], "dropped=99 dropped_total=99") {
		t.Fatalf("after a burst of 100 into a queue of 1: warnings %q", w)
	}
	time.Sleep(3 * interval) // nothing dropped: nothing more said
	if w := warnings(); len(w) != 1 {
		t.Fatalf("warnings without new drops: %q", w)
	}
	rec.Sync(ctx) // the queue is empty again
	burst(10)     // the running recorder takes a few; the rest are dropped
	w := waitFor(2)
	want := fmt.Sprintf("dropped=%d dropped_total=%d ", rec.Dropped()-99, rec.Dropped())
	if len(w) != 2 || rec.Dropped() == 99 || !strings.Contains(w[1], want) {
		t.Fatalf("after a second burst: warnings %q, want the second with %q", w, want)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if _, err := s.write.ExecContext(ctx, "PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, Config{Path: path})
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("err = %v", err)
	}
}

func TestRecorderFoldsRepeats(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	rec := NewRecorder(s, RecorderConfig{Discover: true})
	for i := 0; i < 100; i++ {
		rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "http.ipxe", Detail: map[string]any{"status": 200}})
	}
	rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "http.ipxe", Detail: map[string]any{"status": 404}})
	flushRecorder(t, rec)
	evs, err := s.Events(ctx, "52-54-00-00-00-01", EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Detail["count"] != 100.0 || evs[1].Detail["status"] != 404.0 || evs[1].Detail["count"] != nil {
		t.Fatalf("events: %+v", evs)
	}
}

func TestZeroUUIDIdentifiesNoMachine(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	zero := "00000000-0000-0000-0000-000000000000"
	err := s.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{
		{MAC: "52:54:00:00:00:01", UUID: zero, Type: "dhcp.discover"},
		{MAC: "52:54:00:00:00:02", UUID: zero, Type: "dhcp.discover"},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.LookupMachine("52:54:00:00:00:01", "")
	b, _ := s.LookupMachine("52:54:00:00:00:02", "")
	if a.ID == b.ID || a.UUID != "" || b.UUID != "" {
		t.Fatalf("machines merged or zero UUID kept: %+v %+v", a, b)
	}
	if _, ok := s.LookupMachine("", zero); ok {
		t.Fatal("the zero UUID found a machine")
	}
}

func TestOutcomeStoredInDetail(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	rec := NewRecorder(s, RecorderConfig{Discover: true})
	for i := 0; i < 3; i++ {
		rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "http.ipxe", Outcome: matchbox.Outcome{Status: 200, Group: "g", Profile: "p"}})
	}
	rec.Record(matchbox.BootEvent{MAC: "52:54:00:00:00:01", Type: "http.ipxe", Outcome: matchbox.Outcome{Status: 500, Group: "g", Profile: "p", Error: "boom"}})
	flushRecorder(t, rec)
	evs, err := s.Events(ctx, "52-54-00-00-00-01", EventFilter{})
	if err != nil || len(evs) != 2 {
		t.Fatalf("events %+v %v", evs, err)
	}
	if d := evs[0].Detail; d["status"] != 200.0 || d["group"] != "g" || d["profile"] != "p" || d["count"] != 3.0 {
		t.Fatalf("folded event detail %v", d)
	}
	if d := evs[1].Detail; d["status"] != 500.0 || d["error"] != "boom" || d["count"] != nil {
		t.Fatalf("failed request detail %v", d)
	}
}

// flushRecorder runs rec until everything queued is written, then stops it.
func flushRecorder(t *testing.T, rec *Recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
}

func TestTemplatesCheckedWhenWritten(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	bad := &Object{Kind: matchbox.TemplateIgnition, Source: "ignition/worker.yaml", Template: &matchbox.Template{
		Kind: matchbox.TemplateIgnition, Name: "worker.yaml", Content: "variant: fcos\nversion: 1.5.0\nstorage:\n  filez: []\n"}}
	_, _, err := s.Import(ctx, "test", []*Object{bad})
	if err == nil || !strings.Contains(err.Error(), "ignition/worker.yaml:4: invalid Butane config") || !strings.Contains(err.Error(), "filez") {
		t.Fatalf("import err = %v, want ignition/worker.yaml:4 naming filez", err)
	}
	bad.Source = ""
	_, err = s.UpdateCatalog(ctx, func(c CatalogTx) error { _, err := c.Put(bad, 0); return err })
	var ve *matchbox.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("put err = %v, want a validation error", err)
	}
	if _, ok := s.Snapshot().Template(matchbox.TemplateIgnition, "worker.yaml"); ok {
		t.Fatal("refused template stored")
	}
}

// slowEventWriter takes delay per write, or until the write's context
// ends, and counts the events it wrote.
type slowEventWriter struct {
	delay   time.Duration
	written atomic.Int64
}

func (w *slowEventWriter) AppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	select {
	case <-time.After(w.delay):
		w.written.Add(int64(len(evs)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *slowEventWriter) DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return w.AppendEvents(ctx, evs)
}

// TestRecorderShutdownBounded: at shutdown the recorder writes what is
// queued, but a store too slow to take it all holds the shutdown no longer
// than ShutdownWrites; what is left is counted as failed and logged.
func TestRecorderShutdownBounded(t *testing.T) {
	w := &slowEventWriter{delay: 100 * time.Millisecond}
	logs := &lockedBuffer{}
	rec := NewRecorder(w, RecorderConfig{TxEvents: 1, Batch: 1, ShutdownWrites: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	const events = 100 // 10 s of writes one by one
	for i := range events {
		rec.Record(matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:00:01:%02x", i), Type: "x"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	rec.Run(ctx)
	took := time.Since(start)
	if took > 5*time.Second {
		t.Fatalf("shutdown took %v with ShutdownWrites 500ms", took)
	}
	written, failed := w.written.Load(), rec.Failed()
	if written == 0 || written == events || written+failed != events {
		t.Errorf("%d events written and %d failed of %d, want some written, the rest failed", written, failed, events)
	}
	if !strings.Contains(logs.String(), "boot events lost at shutdown") {
		t.Errorf("no warning of the events lost at shutdown in %q", logs.String())
	}
}
