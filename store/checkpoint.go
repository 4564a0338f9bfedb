package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// checkpointInterval is how often the checkpointer copies committed WAL
// frames into the database file.
const checkpointInterval = 200 * time.Millisecond

// checkpointer runs SQLite's WAL checkpoints on a connection of its own.
//
// SQLite's automatic checkpoint runs inside the commit that pushes the WAL
// past 1,000 pages, on the committing connection: with one write connection
// that is often a lease commit, whose ACK then waits for the copy of the
// WAL into the database file and its fsync, and every writer queued behind
// it waits too. The write connection has wal_autocheckpoint off instead,
// and this checkpointer runs PASSIVE checkpoints, which copy what no reader
// still needs without taking the write lock, so commits only append to the
// WAL. Durability is unchanged: a commit is durable once its WAL frames
// are synced, whether or not they were copied yet.
type checkpointer struct {
	db   *sql.DB
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
	// paused tells when not to checkpoint: while the database is read
	// read-only (a checkpoint would open it for writing first).
	paused func() bool
}

func newCheckpointer(db *sql.DB, log *slog.Logger, paused func() bool) *checkpointer {
	c := &checkpointer{db: db, log: log, stop: make(chan struct{}), done: make(chan struct{}), paused: paused}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.paused() {
			continue
		}
		err := c.checkpoint()
		if err != nil && !failed {
			c.log.Warn("WAL checkpoint failed; retrying", "err", err)
		}
		failed = err != nil
	}
}

// checkpoint runs one PASSIVE checkpoint.
func (c *checkpointer) checkpoint() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, logFrames, done int
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("wal checkpoint: %w", err)
	}
	return nil
}

// close stops the checkpointer, runs a last checkpoint and closes its
// connection. Later calls return the first one's error.
func (c *checkpointer) close() error {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		if !c.paused() {
			c.err = c.checkpoint()
		}
		if err := c.db.Close(); c.err == nil {
			c.err = err
		}
	})
	return c.err
}
