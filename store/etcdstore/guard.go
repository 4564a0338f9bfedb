package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"matchbox/store"
)

// DefaultRequestTimeout bounds every etcd request of the store (reads,
// writes, transactions): past it, etcd is taken for unreachable.
const DefaultRequestTimeout = 5 * time.Second

// guardedKV is the store's view of etcd's key-value API: every request is
// bounded by a timeout, a request that fails because etcd cannot be
// reached or has no quorum wraps store.ErrUnavailable (a full etcd
// database wraps store.ErrStorageFull), and every write's outcome is
// recorded in the store's Health. While Health is degraded, reads and
// writes fail at once with store.ErrUnavailable instead of waiting for the
// timeout (the instance serves from its snapshot meanwhile); the probe
// (Store.Probe) is what finds etcd back.
type guardedKV struct {
	kv      clientv3.KV
	timeout time.Duration
	health  *store.Health
	markers *requestMarkers // nil: transactions sent again carry no request marker
}

var _ clientv3.KV = (*guardedKV)(nil)

// do runs one request within the timeout, again (on another member, as
// the client's balancer picks) while it fails because the member it
// reached went away or lost its leader: one member stopping fails
// nothing. A write sent again may have been applied already: see
// requestMarkers for how a transaction tells.
func (g *guardedKV) do(ctx context.Context, fn func(context.Context) error) error {
	return g.send(ctx, 0, fn)
}

// writeAttempt returns how long one attempt of a write of size bytes
// (keys and values) may go unanswered before send sends it again: a third
// of the timeout for a write of at most resendUnansweredBytes, else 0
// (never). A leader that steps down (the member stopping) may drop a
// proposal another member forwarded to it; that member then never answers
// the request, which would otherwise take the whole timeout and mark the
// store degraded while etcd has a quorum. Sending a write again is safe as
// do says. A larger write (a data directory's import, a bulk apply) may
// take longer than a third of the timeout on a live cluster: it has the
// whole timeout.
func (g *guardedKV) writeAttempt(size int) time.Duration {
	if size > resendUnansweredBytes {
		return 0
	}
	return g.timeout / 3
}

// resendUnansweredBytes is the largest write send sends again when an
// attempt is not answered: the writes DHCP and boots wait for (a lease
// batch, served records, events) are a few kilobytes.
const resendUnansweredBytes = 64 << 10

// opsBytes returns the size of ops' keys and values.
func opsBytes(ops []clientv3.Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.KeyBytes()) + len(op.ValueBytes())
	}
	return n
}

// send runs fn within the timeout, again while it fails transiently or,
// with attempt set, while one attempt has had no answer within attempt.
func (g *guardedKV) send(ctx context.Context, attempt time.Duration, fn func(context.Context) error) error {
	bctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	for {
		actx, acancel := bctx, context.CancelFunc(func() {})
		if attempt > 0 {
			actx, acancel = context.WithTimeout(bctx, attempt)
		}
		err := fn(actx)
		// The attempt's deadline travels with the request: etcd may
		// answer "request timed out" for it just before it passes here.
		unanswered := attempt > 0 && err != nil && bctx.Err() == nil &&
			(actx.Err() != nil || errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrGRPCTimeout))
		acancel()
		if err == nil || (!unanswered && !transient(err)) {
			return classify(ctx, err)
		}
		select {
		case <-bctx.Done():
			return classify(ctx, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// transient tells whether err is a failure that another attempt, possibly
// on another member, may not meet.
func transient(err error) bool {
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader),
		errors.Is(err, rpctypes.ErrLeaderChanged), errors.Is(err, rpctypes.ErrGRPCLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return true
	}
	return status.Code(err) == codes.Unavailable
}

// degraded fails a request at once while the store is degraded.
func (g *guardedKV) degraded(ctx context.Context) error {
	if probing(ctx) {
		return nil
	}
	if hs := g.health.State(); hs.Degraded() {
		return fmt.Errorf("%w: etcd unreachable since %s (%s)", store.ErrUnavailable, hs.Since.UTC().Format(time.RFC3339), hs.Cause)
	}
	return nil
}

func (g *guardedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (resp *clientv3.GetResponse, err error) {
	if err := g.degraded(ctx); err != nil {
		return nil, err
	}
	err = g.do(ctx, func(ctx context.Context) (err error) {
		resp, err = g.kv.Get(ctx, key, opts...)
		return err
	})
	return resp, err
}

func (g *guardedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (resp *clientv3.PutResponse, err error) {
	if err := g.degraded(ctx); err != nil {
		return nil, err
	}
	err = g.send(ctx, g.writeAttempt(len(key)+len(val)), func(ctx context.Context) (err error) {
		resp, err = g.kv.Put(ctx, key, val, opts...)
		return err
	})
	return resp, g.health.Observe(err)
}

func (g *guardedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (resp *clientv3.DeleteResponse, err error) {
	if err := g.degraded(ctx); err != nil {
		return nil, err
	}
	err = g.send(ctx, g.writeAttempt(len(key)), func(ctx context.Context) (err error) {
		resp, err = g.kv.Delete(ctx, key, opts...)
		return err
	})
	return resp, g.health.Observe(err)
}

func (g *guardedKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (resp *clientv3.CompactResponse, err error) {
	err = g.do(ctx, func(ctx context.Context) (err error) {
		resp, err = g.kv.Compact(ctx, rev, opts...)
		return err
	})
	return resp, err
}

func (g *guardedKV) Do(ctx context.Context, op clientv3.Op) (resp clientv3.OpResponse, err error) {
	if err := g.degraded(ctx); err != nil {
		return resp, err
	}
	var attempt time.Duration // a read waits for its answer
	if !op.IsGet() {
		attempt = g.writeAttempt(opsBytes([]clientv3.Op{op}))
	}
	err = g.send(ctx, attempt, func(ctx context.Context) (err error) {
		resp, err = g.kv.Do(ctx, op)
		return err
	})
	if !op.IsGet() {
		g.health.Observe(err)
	}
	return resp, err
}

// Txn starts a transaction; its Commit is bounded, classified and
// observed as a write (a transaction without writes is observed too: the
// store's transactions all write).
func (g *guardedKV) Txn(ctx context.Context) clientv3.Txn {
	return &guardedTxn{g: g, ctx: ctx, ops: func(ctx context.Context) clientv3.Txn { return g.kv.Txn(ctx) }}
}

// guardedTxn records a transaction's conditions and operations and sends
// them at Commit, within the request timeout.
type guardedTxn struct {
	g               *guardedKV
	ctx             context.Context
	ops             func(context.Context) clientv3.Txn
	cmps            []clientv3.Cmp
	thenOps, elseOp []clientv3.Op
}

func (t *guardedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.cmps = append(t.cmps, cs...)
	return t
}

func (t *guardedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.thenOps = append(t.thenOps, ops...)
	return t
}

func (t *guardedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.elseOp = append(t.elseOp, ops...)
	return t
}

func (t *guardedTxn) Commit() (*clientv3.TxnResponse, error) {
	if err := t.g.degraded(t.ctx); err != nil {
		return nil, err
	}
	if t.g.markers == nil || !writes(t.thenOps) {
		resp, _, err := t.commit(t.thenOps)
		return resp, t.g.health.Observe(err)
	}
	for try := 0; ; try++ {
		key, marker, lease, err := t.g.markers.op(t.ctx, t.g.timeout)
		if err != nil {
			return nil, t.g.health.Observe(classify(t.ctx, err))
		}
		resp, sent, err := t.commit(append(t.thenOps[:len(t.thenOps):len(t.thenOps)], marker))
		if err != nil && errors.Is(err, rpctypes.ErrLeaseNotFound) && try == 0 {
			t.g.markers.expire(lease) // or the caller's lease expired: try once more
			continue
		}
		if err == nil && !resp.Succeeded && sent > 1 {
			resp, err = t.earlier(resp, key)
		}
		return resp, t.g.health.Observe(err)
	}
}

// commit sends the transaction with then, again while it fails
// transiently, and says how many times it was sent.
func (t *guardedTxn) commit(then []clientv3.Op) (resp *clientv3.TxnResponse, sent int, err error) {
	var attempt time.Duration // a transaction that only reads waits for its answer
	if writes(then) || writes(t.elseOp) {
		attempt = t.g.writeAttempt(opsBytes(then) + opsBytes(t.elseOp))
	}
	err = t.g.send(t.ctx, attempt, func(ctx context.Context) (err error) {
		sent++
		resp, err = t.ops(ctx).If(t.cmps...).Then(then...).Else(t.elseOp...).Commit()
		return err
	})
	return resp, sent, err
}

// earlier answers a resent transaction that failed its compare: as the
// earlier attempt's commit when its request marker (key) is stored, else
// with the failed compare (resp).
func (t *guardedTxn) earlier(resp *clientv3.TxnResponse, key string) (*clientv3.TxnResponse, error) {
	var got *clientv3.GetResponse
	err := t.g.do(t.ctx, func(ctx context.Context) (err error) {
		got, err = t.g.kv.Get(ctx, key)
		return err
	})
	if err != nil {
		return nil, classify(t.ctx, fmt.Errorf("find whether a transaction sent again had committed: %w", err))
	}
	if len(got.Kvs) == 0 {
		return resp, nil
	}
	h := *got.Header
	h.Revision = got.Kvs[0].ModRevision
	return &clientv3.TxnResponse{Header: &h, Succeeded: true}, nil
}

// classify wraps err with store.ErrUnavailable when etcd could not be
// reached, had no leader or timed out (and the caller's ctx is still
// live), and with store.ErrStorageFull when etcd's database is over its
// quota; other errors are returned as they are.
func classify(ctx context.Context, err error) error {
	if err == nil || store.Reason(err) != "" {
		return err
	}
	if ctx.Err() != nil {
		return err // the caller gave up: says nothing about etcd
	}
	switch {
	case errors.Is(err, rpctypes.ErrNoSpace), errors.Is(err, rpctypes.ErrGRPCNoSpace):
		return fmt.Errorf("%w: etcd: %w", store.ErrStorageFull, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrGRPCTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrLeaderChanged), errors.Is(err, rpctypes.ErrGRPCNotCapable):
		return fmt.Errorf("%w: etcd: %w", store.ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("%w: etcd: %w", store.ErrUnavailable, err)
	}
	return err
}

type probeKey struct{}

// probing tells whether ctx is the probe's: it is sent even while the
// store is degraded.
func probing(ctx context.Context) bool { return ctx.Value(probeKey{}) != nil }

// Health returns the store's write health: degraded while etcd cannot be
// reached or has no quorum, healthy again at the next write or probe that
// succeeds.
func (s *Store) Health() *store.Health { return &s.health }

// Probe writes one small key, as every write does, even while the store
// is degraded: it fails with store.ErrUnavailable while etcd cannot take
// writes, and records its outcome in the store's Health.
func (s *Store) Probe(ctx context.Context) error {
	ctx = context.WithValue(ctx, probeKey{}, true)
	if _, err := s.kv.Put(ctx, s.root+"probe", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("probe etcd: %w", err)
	}
	return nil
}

// check reads etcd every CheckInterval while the store is healthy, so that
// the store becomes degraded when etcd is lost even if nothing writes
// (watches only wait for etcd to come back); Health's probe finds it back.
func (s *Store) check(ctx context.Context) {
	defer close(s.checkDone)
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.health.State().Degraded() {
			continue
		}
		err := s.kv.do(ctx, func(ctx context.Context) error {
			_, err := s.kv.kv.Get(ctx, s.revKey)
			return err
		})
		if ctx.Err() == nil && store.Reason(err) != "" {
			s.log.Warn("etcd does not answer", "err", err)
			s.health.Observe(err)
		}
	}
}
