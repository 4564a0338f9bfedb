package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"matchbox/matchbox"
)

// maxCatalogBatch is how many catalog writes at most share one transaction.
const maxCatalogBatch = 64

// catalogWrite is one catalog write (UpdateCatalog, Import) waiting for
// its transaction, and then its outcome.
type catalogWrite struct {
	ctx   context.Context
	fn    func(c CatalogTx) error
	check func(before, after *matchbox.Snapshot) error
	done  chan struct{} // closed once the outcome is set

	// The outcome, set by whichever writer committed the batch.
	snap     *matchbox.Snapshot
	err      error
	panicked any // a panic of fn or check, raised again in the caller
}

func (w *catalogWrite) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// result returns the write's outcome; a panic of its fn is raised again
// here, in the caller's goroutine.
func (w *catalogWrite) result() (*matchbox.Snapshot, error) {
	<-w.done
	if w.panicked != nil {
		panic(w.panicked)
	}
	return w.snap, w.err
}

// catalogQueue holds the catalog writes waiting for a transaction, in
// arrival order.
type catalogQueue struct {
	mu      sync.Mutex
	pending []*catalogWrite
}

func (q *catalogQueue) push(w *catalogWrite) {
	q.mu.Lock()
	q.pending = append(q.pending, w)
	q.mu.Unlock()
}

// take removes and returns the first n waiting writes at most.
func (q *catalogQueue) take(n int) []*catalogWrite {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.pending))
	batch := append([]*catalogWrite(nil), q.pending[:n]...)
	q.pending = append(q.pending[:0], q.pending[n:]...)
	return batch
}

// commitCatalogWrites runs batch's writes, in order, in one transaction
// with one commit: with synchronous=FULL one fsync for all of them
// instead of one each (group commit). The caller holds s.writeMu.
//
// Each write runs inside a savepoint. Its snapshot is derived from the
// previous accepted write's (the current one for the first) and checked;
// a write whose fn or check fails, or whose snapshot is invalid, is rolled
// back to its savepoint and answered with its error, and the others go
// on as if it had not been tried. The accepted writes are answered once
// the commit returns: all with their snapshots if it succeeded, all with
// its error if it failed (nothing of the batch is then stored, and the
// current snapshot is unchanged). A write whose context is done before its
// turn is answered with the context's error and not run; once begun, a
// write runs to its end whatever its context (cancelling a statement
// inside a transaction could roll back the others' writes).
func (s *Store) commitCatalogWrites(batch []*catalogWrite) {
	if len(batch) == 0 {
		return
	}
	var accepted []*catalogWrite
	befores := map[*catalogWrite]*matchbox.Snapshot{}
	logs := map[*catalogWrite]*auditLog{}
	cur := s.snap.Load()
	finish := func(txErr error) {
		if txErr != nil {
			for _, w := range accepted {
				w.snap, w.err = nil, txErr
			}
		} else if len(accepted) > 0 {
			s.snap.Store(cur)
		}
		for _, w := range batch {
			if w.err != nil || w.panicked != nil {
				continue
			}
			s.logAudit(w.ctx, logs[w])
			for _, d := range w.snap.NewDangling(befores[w]) {
				s.log.WarnContext(w.ctx, "catalog holds a dangling reference", "reference", d)
			}
		}
		for _, w := range batch {
			close(w.done)
		}
	}
	// The transaction is the batch's, not any one writer's: a writer's
	// context being cancelled must not roll back the others' writes.
	txCtx := context.WithoutCancel(batch[0].ctx)
	s.catalogStmts.prepare(txCtx, s.write)
	tx, err := s.write.BeginTx(txCtx, nil)
	if err != nil {
		err = s.health.Observe(classifySQLite(fmt.Errorf("begin transaction: %w", err), s.cfg.Path))
		for _, w := range batch {
			w.err = err
		}
		finish(nil)
		return
	}
	now := s.now()
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			continue
		}
		snap, log, err, aborted := s.runCatalogWrite(tx, w, cur, now)
		if aborted != nil {
			// The transaction is gone or in doubt: nothing of the batch
			// commits, and the writes not yet run are not tried.
			tx.Rollback()
			aborted = s.health.Observe(classifySQLite(aborted, s.cfg.Path))
			for _, o := range batch[i+1:] {
				o.err = fmt.Errorf("catalog write not run: the transaction it shared failed: %w", aborted)
			}
			if w.panicked == nil {
				w.err = aborted
			}
			finish(fmt.Errorf("catalog write rolled back with the transaction it shared: %w", aborted))
			return
		}
		if err != nil {
			w.err = s.health.Observe(classifySQLite(err, s.cfg.Path))
			continue
		}
		befores[w], logs[w], w.snap = cur, log, snap
		cur = snap
		accepted = append(accepted, w)
	}
	if len(accepted) == 0 {
		tx.Rollback()
		finish(nil)
		return
	}
	if err := tx.Commit(); err != nil {
		finish(s.health.Observe(classifySQLite(fmt.Errorf("commit: %w", err), s.cfg.Path)))
		return
	}
	s.observeWrite(nil)
	finish(nil)
}

// runCatalogWrite runs one write of a batch inside a savepoint of tx and
// returns the snapshot it leaves (cur with its changes) and its audit
// records. A refusal (err) is rolled back to the savepoint, leaving tx as
// it was before the write. aborted reports that the savepoint could not be
// taken, released or rolled back to, or that fn or check panicked (the
// panic is kept in w for its caller): tx must then be rolled back whole.
func (s *Store) runCatalogWrite(tx *sql.Tx, w *catalogWrite, cur *matchbox.Snapshot, now time.Time) (snap *matchbox.Snapshot, log *auditLog, err, aborted error) {
	ctx := context.WithoutCancel(w.ctx)
	if _, err := tx.ExecContext(ctx, "SAVEPOINT catalog_write"); err != nil {
		return nil, nil, nil, fmt.Errorf("savepoint: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			w.panicked = p
			aborted = fmt.Errorf("catalog write panicked: %v", p)
		}
	}()
	log = newAuditLog(w.ctx, now)
	c := &sqlCatalogTx{ctx: ctx, tx: tx, now: timestamp(now), audit: log, stmts: &s.catalogStmts}
	err = w.fn(c)
	if err == nil {
		if cur != nil && len(c.changes) <= maxAppliedChanges {
			snap, err = cur.Apply(c.changes, s.cfg.ParseFact)
		} else {
			snap, err = s.buildSnapshot(ctx, tx)
		}
	}
	if err == nil && w.check != nil {
		err = w.check(cur, snap)
	}
	if err != nil {
		if _, rbErr := tx.ExecContext(ctx, "ROLLBACK TO catalog_write"); rbErr != nil {
			return nil, nil, nil, fmt.Errorf("roll back to savepoint after %w: %w", err, rbErr)
		}
		if _, relErr := tx.ExecContext(ctx, "RELEASE catalog_write"); relErr != nil {
			return nil, nil, nil, fmt.Errorf("release savepoint after %w: %w", err, relErr)
		}
		return nil, nil, err, nil
	}
	if _, err := tx.ExecContext(ctx, "RELEASE catalog_write"); err != nil {
		return nil, nil, nil, fmt.Errorf("release savepoint: %w", err)
	}
	return snap, log, nil, nil
}
