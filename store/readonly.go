package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	sqlite "modernc.org/sqlite"
)

// A database in WAL mode cannot be opened for writing on a disk with no
// space left: the first connection sizes the shared-memory index beside it
// (-shm, 32 KiB) and SQLite fails with an I/O error when it cannot. So that
// matchbox still starts and serves what the database holds, Open then
// falls back to reading the database read-only (SQLite's mode=ro with a
// read-only index kept in each connection's memory, readonly_shm=1): the
// catalog, machines and leases load, every write fails at once with the
// storage failure that made the fallback (ErrStorageFull, ErrUnavailable),
// and the store is degraded. Probe, run every second while degraded, leaves
// the fallback once the database opens for writing again: the read
// connections opened read-only are then dropped as they come back to
// their pool and replaced by ordinary ones.

// readOnlyState is the store's read-only fallback.
type readOnlyState struct {
	// on is true while the store reads read-only and refuses writes.
	on atomic.Bool
	// cause is the storage failure that made the fallback (set before on).
	cause atomic.Pointer[error]
	// mu guards open, and is held while the fallback is ended: SQLite
	// shares one index per database file among a process's connections,
	// read-only while one read-only connection is open, so the database
	// is opened for writing only once they are all closed.
	mu   sync.Mutex
	open int
}

// readIdle is the read pool's idle connections outside the fallback
// (database/sql's default); during it, none: each read-only connection
// is closed after use, so that the fallback can end.
const readIdle = 2

// refusal returns the error a write gets while the fallback is on, nil
// otherwise.
func (r *readOnlyState) refusal() error {
	if !r.on.Load() {
		return nil
	}
	cause := *r.cause.Load()
	class := ErrUnavailable
	if errors.Is(cause, ErrStorageFull) {
		class = ErrStorageFull
	}
	var se *storageError
	if errors.As(cause, &se) {
		cause = se.cause
	}
	return &storageError{class, fmt.Errorf("database opened read-only: %w", cause)}
}

// readConnector opens the read pool's connections: ordinary ones, or
// read-only ones while the fallback is on.
type readConnector struct {
	normal, readOnly driver.Connector
	state            *readOnlyState
}

func newReadConnector(normalDSN, readOnlyDSN string, state *readOnlyState) (*readConnector, error) {
	n, err := sqlite.NewConnector(normalDSN)
	if err != nil {
		return nil, err
	}
	ro, err := sqlite.NewConnector(readOnlyDSN)
	if err != nil {
		return nil, err
	}
	return &readConnector{normal: n, readOnly: ro, state: state}, nil
}

// Connect opens one connection, read-only while the fallback is on.
func (c *readConnector) Connect(ctx context.Context) (driver.Conn, error) {
	st := c.state
	st.mu.Lock()
	if !st.on.Load() {
		st.mu.Unlock()
		return c.normal.Connect(ctx)
	}
	st.open++
	st.mu.Unlock()
	conn, err := c.readOnly.Connect(ctx)
	if err != nil {
		st.closed()
		return nil, err
	}
	return &readOnlyConn{conn: conn, state: st}, nil
}

// closed counts a read-only connection closed.
func (r *readOnlyState) closed() {
	r.mu.Lock()
	r.open--
	r.mu.Unlock()
}

// Driver returns the SQLite driver.
func (c *readConnector) Driver() driver.Driver { return c.normal.Driver() }

// readOnlyConn is a read-only connection of the fallback: the pool drops it
// (IsValid, ResetSession) once the fallback is over.
type readOnlyConn struct {
	conn  driver.Conn
	state *readOnlyState
}

func (c *readOnlyConn) Prepare(query string) (driver.Stmt, error) { return c.conn.Prepare(query) }

// Close closes the connection.
func (c *readOnlyConn) Close() error {
	defer c.state.closed()
	return c.conn.Close()
}

// Begin is driver.Conn's; database/sql calls BeginTx.
func (c *readOnlyConn) Begin() (driver.Tx, error) { return c.conn.Begin() }

func (c *readOnlyConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *readOnlyConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *readOnlyConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *readOnlyConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

// IsValid is false once the fallback is over: the pool closes the
// connection instead of reusing it.
func (c *readOnlyConn) IsValid() bool {
	if !c.state.on.Load() {
		return false
	}
	v, ok := c.conn.(driver.Validator)
	return !ok || v.IsValid()
}

// ResetSession refuses reuse once the fallback is over.
func (c *readOnlyConn) ResetSession(ctx context.Context) error {
	if !c.state.on.Load() {
		return driver.ErrBadConn
	}
	if r, ok := c.conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// enterReadOnly turns the fallback on after opening for writing failed
// with cause, a storage failure, if the database reads read-only; it
// returns the schema version read.
func (s *Store) enterReadOnly(ctx context.Context, cause error) (int, error) {
	s.dropWriteConn(ctx)
	s.readOnly.cause.Store(&cause)
	s.read.SetMaxIdleConns(0)
	s.readOnly.on.Store(true)
	var current int
	if err := s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		s.readOnly.on.Store(false)
		s.read.SetMaxIdleConns(readIdle)
		return 0, fmt.Errorf("%w (read-only: %v)", cause, err)
	}
	s.health.Observe(s.readOnly.refusal())
	s.log.Warn("database opened read-only: the storage cannot take writes; serving what it holds, every write fails until the storage recovers",
		"db", s.cfg.Path, "reason", Reason(cause), "cause", cause)
	return current, nil
}

// leaveReadOnly ends the fallback when the database opens for writing
// again (a connection of its own reads the schema version, which sizes
// the shared-memory index); it returns the storage failure otherwise.
func (s *Store) leaveReadOnly(ctx context.Context) error {
	if !s.readOnly.on.Load() {
		return nil
	}
	s.readOnly.mu.Lock()
	defer s.readOnly.mu.Unlock()
	if s.readOnly.open > 0 {
		return s.readOnly.refusal() // reads under way: next time
	}
	db, err := sql.Open("sqlite", s.writeDSN)
	if err != nil {
		return fmt.Errorf("reopen %s for writing: %w", s.cfg.Path, err)
	}
	defer db.Close()
	var current int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		err = classifySQLite(fmt.Errorf("reopen %s for writing: %w", s.cfg.Path, err), s.cfg.Path)
		if Reason(err) == "" {
			err = &storageError{ErrUnavailable, err}
		}
		return err
	}
	s.dropWriteConn(ctx)
	s.readOnly.on.Store(false)
	s.read.SetMaxIdleConns(readIdle)
	s.log.Info("database writable again: read-only fallback ended", "db", s.cfg.Path)
	return nil
}

// dropWriteConn closes the write pool's connection: one that failed to
// open the database for writing stays unable to write (SQLite keeps it
// read-only), and the next write opens a new one.
func (s *Store) dropWriteConn(ctx context.Context) {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return
	}
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}
