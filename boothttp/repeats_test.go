package boothttp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/matchbox"
	"matchbox/store"
)

// TestRepeatedBootsCounted: through the real endpoints, store and
// recorder, a known machine asking again for the same answer is counted,
// not written as a row per request; the first boot, a changed profile and
// an error are rows as they happen, and the counts reach the timeline
// when the answer changes and when RunRepeats stops.
func TestRepeatedBootsCounted(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const mac = "52:54:00:00:00:01"
	group := func(profile string) []*store.Object {
		return []*store.Object{
			{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "p", Boot: matchbox.Boot{Kernel: "/p", Args: []string{"host={{.hostname}}"}}}},
			{Kind: matchbox.KindProfile, Profile: &matchbox.Profile{ID: "q", Boot: matchbox.Boot{Kernel: "/q"}}},
			{Kind: matchbox.KindGroup, Group: &matchbox.Group{ID: "g", Profile: profile, Selector: map[string]string{"mac": mac}, Metadata: map[string]any{"hostname": "n1"}}},
		}
	}
	if _, _, err := st.Import(ctx, "test", group("p")); err != nil {
		t.Fatal(err)
	}
	rec := store.NewRecorder(st, store.RecorderConfig{Discover: true})
	recCtx, stopRec := context.WithCancel(ctx)
	recDone := make(chan struct{})
	go func() { rec.Run(recCtx); close(recDone) }()
	t.Cleanup(func() { stopRec(); <-recDone })
	s, err := New(Config{Snapshot: st.Snapshot, Machines: IndexLookup{Index: st}, Events: rec, RepeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	repCtx, stopRepeats := context.WithCancel(ctx)
	repDone := make(chan error)
	go func() { repDone <- s.RunRepeats(repCtx) }()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	fetch := func(path string, times int, want int) {
		t.Helper()
		for range times {
			resp, err := http.Get(srv.URL + path + "?mac=" + mac)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
			}
		}
		if err := rec.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fetch("/ipxe", 1, 200) // first boot: discovers the machine
	fetch("/ipxe", 5, 200) // known: one row, four counted
	if _, _, err := st.Import(ctx, "test", group("q")); err != nil {
		t.Fatal(err)
	}
	fetch("/ipxe", 3, 200)    // the count of p's repeats, then a row for q, two counted
	fetch("/generic", 1, 404) // an error is a row (of its own type: /ipxe's count goes on)
	fetch("/ipxe", 2, 200)    // two more counted
	stopRepeats()
	if err := <-repDone; err != nil {
		t.Fatal(err)
	}
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fetch("/ipxe", 1, 200) // after RunRepeats stopped, every request is a row
	fetch("/ipxe", 1, 200)

	evs, err := st.Events(ctx, store.MachineIDFromMAC(mac), store.EventFilter{Written: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		row := fmt.Sprintf("%s %v %v", ev.Type, ev.Detail["profile"], ev.Detail["status"])
		if c, ok := ev.Detail["count"]; ok {
			row += fmt.Sprintf(" count=%v", c)
		}
		got = append(got, row)
	}
	want := []string{
		"http.ipxe p 200", // first boot
		"http.ipxe p 200", // first request of the known machine
		"http.ipxe p 200 count=4",
		"http.ipxe q 200",
		"http.generic q 404",
		"http.ipxe q 200 count=4", // written when RunRepeats stopped
		"http.ipxe q 200",
		"http.ipxe q 200",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("timeline (-want +got):\n%s", d)
	}
}

// TestRepeatsSweep: a count is written once its interval is over, and the
// machine's next request is then a row again.
func TestRepeatsSweep(t *testing.T) {
	r := newRepeats(time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := matchbox.BootEvent{MachineID: "m1", MAC: "52:54:00:00:00:01", Type: matchbox.EventIPXE, Outcome: matchbox.Outcome{Status: 200, Group: "g", Profile: "p"}}
	steps := []struct {
		at          time.Duration
		state       matchbox.MachineState
		fold, flush bool
	}{
		{at: 0, fold: false},
		{at: time.Second, fold: true},
		{at: 2 * time.Second, fold: true},
		{at: 3 * time.Second, state: matchbox.StateProvisioned, fold: false, flush: true}, // state changed
		{at: 4 * time.Second, state: matchbox.StateProvisioned, fold: true},
	}
	for i, st := range steps {
		e := ev
		fold, flush := r.observe(&e, st.state, t0.Add(st.at))
		if fold != st.fold || (flush != nil) != st.flush {
			t.Errorf("step %d: fold %v flush %v, want %v %v", i, fold, flush, st.fold, st.flush)
		}
		if flush != nil && flush.Detail["count"] != 2 {
			t.Errorf("step %d: flushed count %v, want 2", i, flush.Detail["count"])
		}
	}
	if out := r.sweep(t0.Add(30*time.Second), false); len(out) != 0 {
		t.Errorf("sweep inside the interval wrote %v", out)
	}
	out := r.sweep(t0.Add(3*time.Second+time.Minute), false)
	if len(out) != 1 || out[0].Detail["count"] != 1 || !out[0].At.Equal(t0.Add(4*time.Second)) {
		t.Errorf("sweep after the interval wrote %+v, want one row of count 1 at 4s", out)
	}
	e := ev
	if fold, _ := r.observe(&e, matchbox.StateProvisioned, t0.Add(2*time.Minute)); fold {
		t.Error("the request after a sweep was folded; want a row")
	}
}
