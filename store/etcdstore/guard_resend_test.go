package etcdstore

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/store"
)

// stallKV answers a Put after delay, or never (until its context ends)
// for the first unanswered calls.
type stallKV struct {
	clientv3.KV
	unanswered atomic.Int32
	delay      time.Duration
	calls      atomic.Int32
}

func (k *stallKV) Put(ctx context.Context, key, val string, _ ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	k.calls.Add(1)
	if k.unanswered.Add(-1) >= 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-time.After(k.delay):
		return &clientv3.PutResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestUnansweredWriteSentAgain: a small write with no answer within a third
// of the request timeout is sent again and succeeds, the store staying
// healthy; a write larger than resendUnansweredBytes that takes more than
// a third of the timeout (an import on a slow cluster) is sent once and
// succeeds; a read is never cut short.
func TestUnansweredWriteSentAgain(t *testing.T) {
	ctx := context.Background()
	const timeout = 600 * time.Millisecond
	guard := func(kv clientv3.KV) (*guardedKV, *store.Health) {
		h := new(store.Health)
		return &guardedKV{kv: kv, timeout: timeout, health: h}, h
	}

	kv := &stallKV{}
	kv.unanswered.Store(1)
	g, h := guard(kv)
	if _, err := g.Put(ctx, "k", "small"); err != nil {
		t.Fatalf("small write whose first attempt had no answer: %v", err)
	}
	if n := kv.calls.Load(); n != 2 {
		t.Errorf("small write sent %d times, want 2", n)
	}
	if h.State().Degraded() {
		t.Errorf("degraded after a write sent again succeeded: %+v", h.State())
	}

	kv = &stallKV{delay: timeout / 2}
	g, _ = guard(kv)
	if _, err := g.Put(ctx, "k", strings.Repeat("x", resendUnansweredBytes+1)); err != nil {
		t.Fatalf("large write taking half the timeout: %v", err)
	}
	if n := kv.calls.Load(); n != 1 {
		t.Errorf("large write sent %d times, want 1", n)
	}

	kv = &stallKV{delay: timeout / 2}
	g, _ = guard(kv)
	if err := g.do(ctx, func(ctx context.Context) error { _, err := kv.Put(ctx, "k", "read-like"); return err }); err != nil {
		t.Fatalf("request through do taking half the timeout: %v", err)
	}
	if n := kv.calls.Load(); n != 1 {
		t.Errorf("request through do sent %d times, want 1", n)
	}
}
