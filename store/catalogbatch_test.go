package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/audit"
	"matchbox/matchbox"
)

// queueWrites starts one catalog write per fn while the test holds the
// store's write lock, each only once the one before it waits in the queue,
// so that the next writer to take the lock finds them all, in order. It
// returns each write's outcome once the lock is released and they end.
func queueWrites(t *testing.T, s *Store, fns []func(c CatalogTx) error) []error {
	t.Helper()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	s.writeMu.Lock()
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.UpdateCatalog(context.Background(), fn)
		}()
		for deadline := time.Now().Add(10 * time.Second); ; {
			s.catalogQueue.mu.Lock()
			n := len(s.catalogQueue.pending)
			s.catalogQueue.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				s.writeMu.Unlock()
				t.Fatalf("write %d never queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	s.writeMu.Unlock()
	wg.Wait()
	return errs
}

func putGroup(g *Object) func(c CatalogTx) error {
	return func(c CatalogTx) error {
		_, err := c.Put(g, 0)
		return err
	}
}

// TestCatalogWritesCommittedTogether queues catalog writes behind a held
// write lock: they are committed in one transaction (one clock reading,
// shared by their audit records), each refused write rolled back alone —
// a failing fn after a write of its own, a version conflict, a selector an
// earlier write of the same batch took — and the writes after a refusal
// see the catalog without it.
func TestCatalogWritesCommittedTogether(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	var ticks atomic.Int64
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) }
	if _, err := s.UpdateCatalog(ctx, func(c CatalogTx) error {
		_, err := c.Put(profileObj("p"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mac := func(n int) map[string]string { return map[string]string{"mac": fmt.Sprintf("52:54:00:00:00:%02x", n)} }
	errBoom := errors.New("boom")
	errs := queueWrites(t, s, []func(c CatalogTx) error{
		putGroup(groupObj("a", "p", mac(1))),
		func(c CatalogTx) error { // writes, then fails: nothing of it stays
			if _, err := c.Put(groupObj("b", "p", mac(2)), 0); err != nil {
				return err
			}
			return errBoom
		},
		putGroup(groupObj("c", "p", mac(1))), // a's selector: refused
		func(c CatalogTx) error { // b does not exist: its write was undone
			if _, err := c.Get(matchbox.KindGroup, "b"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("b seen: %v", err)
			}
			_, err := c.Put(groupObj("d", "p", mac(2)), 0)
			return err
		},
		func(c CatalogTx) error { // a exists at version 1, not 7
			_, err := c.Put(groupObj("a", "p", mac(3)), 7)
			return err
		},
		putGroup(groupObj("e", "p", mac(5))),
	})
	if !errors.Is(errs[1], errBoom) {
		t.Errorf("failing write: err = %v", errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), `groups "a" and "c" have identical selectors`) {
		t.Errorf("duplicate selector: err = %v", errs[2])
	}
	if !errors.Is(errs[4], ErrVersionConflict) {
		t.Errorf("stale version: err = %v", errs[4])
	}
	for _, i := range []int{0, 3, 5} {
		if errs[i] != nil {
			t.Errorf("write %d: %v", i, errs[i])
		}
	}

	var snapIDs []string
	for _, g := range s.Snapshot().Groups() {
		snapIDs = append(snapIDs, g.ID)
	}
	// Reopened, the database holds what the snapshot holds.
	s.Close()
	s2, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var storedIDs []string
	for _, g := range s2.Snapshot().Groups() {
		storedIDs = append(storedIDs, g.ID)
	}
	sort.Strings(snapIDs)
	sort.Strings(storedIDs)
	want := []string{"a", "d", "e"}
	if diff := cmp.Diff(want, snapIDs); diff != "" {
		t.Errorf("snapshot groups (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, storedIDs); diff != "" {
		t.Errorf("stored groups (-want +got):\n%s", diff)
	}
	recs, err := s2.Audit(ctx, audit.Filter{Kind: string(matchbox.KindGroup)})
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]time.Time{}
	for _, r := range recs {
		at[r.Object] = r.At
	}
	if len(at) != 3 || at["a"] != at["d"] || at["a"] != at["e"] {
		t.Errorf("audit of the queued writes: %v; want a, d and e written in one transaction (one time)", at)
	}
}

// TestCatalogWriteCancelledBeforeItsTurn: a write whose context ends while
// it waits is answered with the context's error and not run, and the
// writes queued with it commit.
func TestCatalogWriteCancelledBeforeItsTurn(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	if _, err := s.UpdateCatalog(ctx, putGroup(profileObj("p"))); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	var ran atomic.Bool
	done := make(chan error, 1)
	s.writeMu.Lock()
	go func() {
		_, err := s.UpdateCatalog(cctx, func(c CatalogTx) error {
			ran.Store(true)
			return nil
		})
		done <- err
	}()
	for {
		s.catalogQueue.mu.Lock()
		n := len(s.catalogQueue.pending)
		s.catalogQueue.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	other := make(chan error, 1)
	go func() {
		_, err := s.UpdateCatalog(ctx, putGroup(groupObj("g", "p", nil)))
		other <- err
	}()
	for {
		s.catalogQueue.mu.Lock()
		n := len(s.catalogQueue.pending)
		s.catalogQueue.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.writeMu.Unlock()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: err = %v", err)
	}
	if ran.Load() {
		t.Error("cancelled write ran")
	}
	if err := <-other; err != nil {
		t.Errorf("write queued with it: %v", err)
	}
	if _, ok := s.Snapshot().Group("g"); !ok {
		t.Error("group g not in the snapshot")
	}
}
