package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/etcdstore/etcdtest"
	"matchbox/store/storetest"
)

// dropAnswer is a KV whose write transactions, while armed, commit and
// then fail as a dropped connection does (gRPC Unavailable): a fault
// between the commit and its answer, after which the store sends the
// transaction again.
type dropAnswer struct {
	clientv3.KV
	armed   atomic.Int32 // write transactions still to lose the answer of
	dropped atomic.Int32
}

func (d *dropAnswer) Txn(ctx context.Context) clientv3.Txn {
	return &dropTxn{Txn: d.KV.Txn(ctx), d: d}
}

type dropTxn struct {
	clientv3.Txn
	d     *dropAnswer
	write bool
}

func (t *dropTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *dropTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}
func (t *dropTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.write = t.write || writes(ops)
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *dropTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil && t.write && resp.Succeeded && t.d.armed.Add(-1) >= 0 {
		t.d.dropped.Add(1)
		return nil, status.Error(codes.Unavailable, "connection dropped after the commit")
	}
	return resp, err
}

// TestResentWriteFindsItsCommit: a write transaction whose answer is lost
// after it committed is sent again; the resent one fails its compare
// against its own commit, and the request marker makes the write answer
// as that commit did: a create-only write does not answer "already
// exists", a compare-and-swap of a machine's state no conflict. Without
// the markers (the rows "without markers") it did.
func TestResentWriteFindsItsCommit(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	ctx := context.Background()
	type op struct {
		name    string
		prepare func(s *Store) error
		write   func(s *Store) error
		check   func(s *Store) error
		old     error // what the write answered without markers
	}
	ops := []op{{
		name: "create-only catalog write",
		write: func(s *Store) error {
			_, err := s.UpdateCatalog(ctx, func(c store.CatalogTx) error {
				_, err := c.Put(storetest.Profile("p"), -1)
				return err
			})
			return err
		},
		check: func(s *Store) error {
			return s.ViewCatalog(ctx, func(c store.CatalogTx) error {
				o, err := c.Get(matchbox.KindProfile, "p")
				if err == nil && o.Version != 1 {
					err = fmt.Errorf("profile p at version %d, want 1 (written once)", o.Version)
				}
				return err
			})
		},
		old: store.ErrExists,
	}, {
		name: "machine state compare-and-swap",
		prepare: func(s *Store) error {
			_, err := s.PutMachine(ctx, &matchbox.Machine{ID: "m", State: matchbox.StateReady}, -1)
			return err
		},
		write: func(s *Store) error {
			return s.SetMachineState(ctx, "m", matchbox.StateProvisioning, matchbox.StateReady)
		},
		check: func(s *Store) error {
			m, _, err := s.Machine(ctx, "m")
			if err == nil && m.State != matchbox.StateProvisioning {
				err = fmt.Errorf("machine m is %s, want %s", m.State, matchbox.StateProvisioning)
			}
			return err
		},
		old: store.ErrVersionConflict,
	}}
	n := 0
	for _, markers := range []bool{true, false} {
		for _, o := range ops {
			name := o.name
			if !markers {
				name += " without markers"
			}
			t.Run(name, func(t *testing.T) {
				n++
				cli := cluster.Client(t)
				drop := &dropAnswer{KV: cli.KV}
				cli.KV = drop
				s, err := Open(ctx, Config{Client: cli, Prefix: fmt.Sprintf("resend-%d", n)})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if !markers {
					s.kv.markers = nil
				}
				if o.prepare != nil {
					if err := o.prepare(s); err != nil {
						t.Fatal(err)
					}
				}
				drop.armed.Store(1)
				err = o.write(s)
				if drop.dropped.Load() != 1 {
					t.Fatalf("the fault did not happen: %d answers dropped", drop.dropped.Load())
				}
				if !markers {
					if !errors.Is(err, o.old) {
						t.Fatalf("without markers the resent write answered %v, want %v (the failure the markers prevent)", err, o.old)
					}
					return
				}
				if err != nil {
					t.Fatalf("write whose first answer was lost after its commit: %v", err)
				}
				if err := o.check(s); err != nil {
					t.Fatal(err)
				}
				resp, err := cli.Get(ctx, s.root+"requests/", clientv3.WithPrefix(), clientv3.WithCountOnly())
				if err != nil {
					t.Fatal(err)
				}
				if resp.Count == 0 {
					t.Error("no request marker stored")
				}
			})
		}
	}
}
