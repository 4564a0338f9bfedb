package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/dhcp"
	"matchbox/matchbox"
)

// TestLeaseCommitGoesFirst: while a lease commit waits for the write
// connection, a timeline batch does not take its place in the queue: it
// waits (holding nothing) until the lease commit has the connection.
func TestLeaseCommitGoesFirst(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	// The test holds the one write connection, as a long transaction
	// would.
	conn, err := s.write.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaseDone := make(chan error, 1)
	go func() {
		leaseDone <- s.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: dhcp.Lease{IP: netip.MustParseAddr("10.0.0.5"), MAC: "52:54:00:00:00:05", Expires: time.Now().Add(time.Hour), State: dhcp.LeaseBound}}})
	}()
	waitFor(t, "the lease commit to wait for the connection", func() bool {
		s.leaseFirst.mu.Lock()
		defer s.leaseFirst.mu.Unlock()
		return s.leaseFirst.waiting == 1
	})
	eventsDone := make(chan error, 1)
	go func() {
		eventsDone <- s.DiscoverAndAppendEvents(ctx, []matchbox.BootEvent{{MAC: "52:54:00:00:00:06", Type: "dhcp.ack", At: time.Now()}})
	}()
	// A timeline batch past its yield holds writeMu while it waits for
	// the connection: the batch must not be there.
	time.Sleep(20 * time.Millisecond)
	if !s.writeMu.TryLock() {
		t.Fatal("the timeline batch queued for the write connection before the waiting lease commit")
	}
	s.writeMu.Unlock()
	conn.Close()
	for name, ch := range map[string]chan error{"lease commit": leaseDone, "timeline batch": eventsDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not finish", name)
		}
	}
}

// TestLeaseFirstYield: yield returns at once when no lease commit waits,
// when the waiting one begins, and after maxLeaseYield when it never does
// (leases committed back to back must not starve the timeline).
func TestLeaseFirstYield(t *testing.T) {
	ctx := context.Background()
	var p leaseFirst
	if p.yield(ctx) {
		t.Fatal("yielded with no lease commit waiting")
	}
	begun := p.arrive()
	released := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		p.yield(ctx)
		released <- time.Since(start)
	}()
	time.Sleep(10 * time.Millisecond)
	select {
	case d := <-released:
		t.Fatalf("yield returned after %v while a lease commit waited", d)
	default:
	}
	begun()
	begun() // a second call changes nothing
	select {
	case <-released:
	case <-time.After(maxLeaseYield / 2):
		t.Fatal("yield did not return when the lease commit began")
	}
	if p.yield(ctx) {
		t.Fatal("yielded after the lease commit began")
	}
	stuck := p.arrive()
	defer stuck()
	start := time.Now()
	if !p.yield(ctx) {
		t.Fatal("did not yield to a waiting lease commit")
	}
	if d := time.Since(start); d < maxLeaseYield || d > 20*maxLeaseYield {
		t.Fatalf("yield to a lease commit that never began took %v, want about %v", d, maxLeaseYield)
	}
}

// chunkWriter records the sizes of the recorder's writes and fails those
// whose number is in fail.
type chunkWriter struct {
	mu    sync.Mutex
	sizes []int
	fail  map[int]bool
}

func (w *chunkWriter) AppendEvents(_ context.Context, evs []matchbox.BootEvent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sizes = append(w.sizes, len(evs))
	if w.fail[len(w.sizes)] {
		return errors.New("broken")
	}
	return nil
}

func (w *chunkWriter) DiscoverAndAppendEvents(ctx context.Context, evs []matchbox.BootEvent) error {
	return w.AppendEvents(ctx, evs)
}

// TestRecorderBoundsTransactions: a batch is written in transactions of at
// most TxEvents events; a failed one counts its events (repeats folded
// into it included) as failed, and the others are written.
func TestRecorderBoundsTransactions(t *testing.T) {
	w := &chunkWriter{fail: map[int]bool{2: true}}
	rec := NewRecorder(w, RecorderConfig{TxEvents: 64, Batch: 512, FlushInterval: time.Hour})
	at := time.Now()
	for i := range 150 {
		rec.Record(matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:00:00:%02x", i), Type: "dhcp.ack", At: at})
	}
	// A repeat of the 70th event: folded into it, in the second write.
	rec.Record(matchbox.BootEvent{MAC: fmt.Sprintf("52:54:00:00:00:%02x", 69), Type: "dhcp.ack", At: at})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if diff := cmp.Diff([]int{64, 64, 22}, w.sizes); diff != "" {
		t.Errorf("transaction sizes (-want +got):\n%s", diff)
	}
	if got := rec.Failed(); got != 65 {
		t.Errorf("failed events: %d, want 65 (the second transaction's 64, one of them twice)", got)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
