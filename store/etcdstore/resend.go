package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A write transaction is sent again when its answer was lost (the member
// went away, the connection dropped): the first attempt may have
// committed. The transactions compare revisions, so the resent one then
// fails its compare against its own earlier commit, and the caller would
// read again and find its write done, by "someone": a create-only write
// would answer "already exists", a compare-and-swap of a machine's state
// a conflict. So every write transaction also puts a request marker, a key
// of its own (requests/<random id>) under a short etcd lease; when a
// resent transaction fails its compare, the marker tells whether the
// first attempt committed, and at which revision, and the write answers
// as that commit did.
//
// The markers live between markerTTL/2 and markerTTL (far longer than a
// request's timeout, within which it is resent) and cost one operation in
// the write's own transaction; etcd deletes them with their lease.

// markerTTL is the lease of request markers; a lease is used for new
// markers for half of it.
const markerTTL = 2 * time.Minute

// requestMarkers grants the leases of request markers and names them.
type requestMarkers struct {
	lease  clientv3.Lease
	prefix string // <root>requests/

	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

// op returns a new marker's key and its put, under the current lease.
func (m *requestMarkers) op(ctx context.Context, timeout time.Duration) (string, clientv3.Op, clientv3.LeaseID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.id == 0 || time.Since(m.granted) > markerTTL/2 {
		gctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := m.lease.Grant(gctx, int64(markerTTL/time.Second))
		if err != nil {
			return "", clientv3.Op{}, 0, fmt.Errorf("grant the lease of request markers: %w", err)
		}
		m.id, m.granted = resp.ID, time.Now()
	}
	var b [12]byte
	rand.Read(b[:])
	key := m.prefix + hex.EncodeToString(b[:])
	return key, clientv3.OpPut(key, "", clientv3.WithLease(m.id)), m.id, nil
}

// expire forgets the current lease (etcd no longer knows it).
func (m *requestMarkers) expire(id clientv3.LeaseID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.id == id {
		m.id = 0
	}
}

// writes tells whether ops change anything.
func writes(ops []clientv3.Op) bool {
	for _, op := range ops {
		if !op.IsGet() {
			return true
		}
	}
	return false
}
