package store

import (
	"context"
	"sync"
	"time"
)

// leaseFirst gives lease commits the single write connection before
// timeline batches. SQLite has one writer, and database/sql hands a freed
// connection to any of its waiters: a lease commit (whose ACK waits for
// it) could queue behind several of the recorder's transactions. A lease
// commit announces itself when it asks for the connection (arrive) and
// when it has it (begun); a timeline batch about to start waits while a
// lease commit is announced and has not begun, for at most
// maxLeaseYield, so that it still runs while leases are committed back to
// back. A lease commit then waits behind at most one timeline
// transaction, whose size the Recorder bounds (RecorderConfig.TxEvents).
type leaseFirst struct {
	mu      sync.Mutex
	waiting int
	// clear is closed when waiting drops to zero; nil while it is zero.
	clear chan struct{}
}

// maxLeaseYield bounds how long a timeline batch waits for lease commits.
const maxLeaseYield = 50 * time.Millisecond

// arrive announces a lease commit asking for the write connection; the
// returned function says that it has it (or gave up), and may be called
// more than once.
func (p *leaseFirst) arrive() (begun func()) {
	p.mu.Lock()
	if p.waiting == 0 {
		p.clear = make(chan struct{})
	}
	p.waiting++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.waiting--
			if p.waiting == 0 {
				close(p.clear)
				p.clear = nil
			}
			p.mu.Unlock()
		})
	}
}

// yield waits until no lease commit waits for the write connection, at
// most maxLeaseYield or until ctx ends. It reports whether it waited.
func (p *leaseFirst) yield(ctx context.Context) bool {
	p.mu.Lock()
	ch := p.clear
	p.mu.Unlock()
	if ch == nil {
		return false
	}
	t := time.NewTimer(maxLeaseYield)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}
