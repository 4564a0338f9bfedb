package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	sqlite "modernc.org/sqlite"
)

// Storage failures. A write that fails because the storage cannot take it
// wraps one of them (and the driver's own error): callers answer with
// them (the API: 507 and 503) rather than with an internal error, and the
// store reports itself degraded (Health) until a write succeeds again.
var (
	// ErrStorageFull: the disk holding the database has no space left
	// (SQLITE_FULL, or an I/O error on a filesystem with no free space).
	ErrStorageFull = errors.New("storage full")
	// ErrUnavailable: the storage refuses writes or cannot be reached: a
	// read-only database or filesystem (SQLITE_READONLY), an I/O error
	// (SQLITE_IOERR), a database file that cannot be opened
	// (SQLITE_CANTOPEN), or a remote store that is not answering.
	ErrUnavailable = errors.New("storage unavailable")
)

// Degraded reasons, as Health and the matchbox_store_degraded gauge name
// them.
const (
	ReasonFull        = "storage_full"
	ReasonUnavailable = "storage_unavailable"
)

// Reasons lists every degraded reason (for metrics that export each one).
var Reasons = []string{ReasonFull, ReasonUnavailable}

// SQLite primary result codes this file classifies.
const (
	sqliteReadOnly  = 8
	sqliteIOErr     = 10
	sqliteFull      = 13
	sqliteCantOpen  = 14
	lowSpaceAtLeast = 64 << 10 // below this, an I/O error is taken for a full disk
)

// storageError is a driver error classified as ErrStorageFull or
// ErrUnavailable: errors.Is finds both the class and the cause.
type storageError struct {
	class error
	cause error
}

func (e *storageError) Error() string   { return e.class.Error() + ": " + e.cause.Error() }
func (e *storageError) Unwrap() []error { return []error{e.class, e.cause} }

// Reason returns the degraded reason err is, ReasonFull or
// ReasonUnavailable, or "" when err is not a storage failure.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrStorageFull):
		return ReasonFull
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	}
	return ""
}

// classifySQLite wraps err with ErrStorageFull or ErrUnavailable when a
// SQLite error in its chain says the storage failed; dbPath's filesystem
// tells a full disk from another I/O error. Other errors are returned as
// they are.
func classifySQLite(err error, dbPath string) error {
	if err == nil || Reason(err) != "" {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqliteFull:
		return &storageError{ErrStorageFull, err}
	case sqliteIOErr:
		if lowOnSpace(dbPath) {
			return &storageError{ErrStorageFull, err}
		}
		return &storageError{ErrUnavailable, err}
	case sqliteReadOnly, sqliteCantOpen:
		return &storageError{ErrUnavailable, err}
	}
	return err
}

// lowOnSpace tells whether the filesystem holding path has (nearly) no
// space left for an unprivileged writer.
func lowOnSpace(path string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return false
	}
	return st.Bavail*uint64(st.Bsize) < lowSpaceAtLeast
}

// observeWrite records a write's outcome in the store's Health, as
// Health.Observe does, except that a write that succeeds while the store
// is degraded for a full disk that still has (nearly) no space left does
// not make it healthy: it fitted in pages SQLite already held (a WAL file
// it rewrites), and the next write needing more would fail. Only space
// returning, seen by the probe (Run), ends a full-disk degradation.
func (s *Store) observeWrite(err error) error {
	if err == nil && s.health.State().Reason == ReasonFull && lowOnSpace(s.cfg.Path) {
		return nil
	}
	return s.health.Observe(err)
}

// HealthState is a store's condition as /healthz and /metrics report it.
type HealthState struct {
	// Reason is "" when healthy, else ReasonFull or ReasonUnavailable.
	Reason string
	// Cause is the failed write's error.
	Cause string
	// Since is when the store became degraded.
	Since time.Time
}

// Degraded tells whether the store is degraded.
func (h HealthState) Degraded() bool { return h.Reason != "" }

// Health tracks whether a store can write: a write failing with a storage
// failure (ErrStorageFull, ErrUnavailable) makes it degraded, and the next
// successful write, or a successful probe (Run), makes it healthy again
// (a full disk: only once space returns, see Store.observeWrite).
// Reads and everything served from the in-memory snapshot go on meanwhile.
// It is safe for concurrent use; its zero value is healthy.
type Health struct {
	mu    sync.Mutex
	state HealthState
	// changed is closed and replaced when the state changes (tests, Run).
	changed chan struct{}
	// onChange is called (outside the lock) with every new state.
	onChange func(HealthState)
}

// OnChange makes fn be called with every new state (one function; a later
// call replaces it). fn must not block.
func (h *Health) OnChange(fn func(HealthState)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onChange = fn
}

// State returns the current state.
func (h *Health) State() HealthState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Observe records the outcome of a write: nil makes the store healthy, a
// storage failure degraded; other errors (a conflict, a validation error)
// say nothing about the storage and change nothing. It returns err.
func (h *Health) Observe(err error) error {
	reason := Reason(err)
	if err != nil && reason == "" {
		return err
	}
	h.mu.Lock()
	if h.state.Reason == reason {
		// No change of condition: keep the latest cause, tell no one.
		if reason != "" {
			h.state.Cause = err.Error()
		}
		h.mu.Unlock()
		return err
	}
	next := HealthState{Reason: reason}
	if reason != "" {
		next.Cause = err.Error()
		next.Since = time.Now()
	}
	h.state = next
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	cb := h.onChange
	h.mu.Unlock()
	if cb != nil {
		cb(next)
	}
	return err
}

// wait returns a channel closed at the next change of state.
func (h *Health) wait() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// Run probes the storage every interval while it is degraded, with probe
// (a small write that fails as the store's writes would), so that the
// store is reported healthy again once space returns or the storage is
// writable, whether or not other writes come. It returns when ctx ends.
func (h *Health) Run(ctx context.Context, interval time.Duration, probe func(context.Context) error) {
	for {
		changed := h.wait()
		if !h.State().Degraded() {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		pctx, cancel := context.WithTimeout(ctx, interval+5*time.Second)
		err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.Observe(err)
	}
}

// Probe writes one small transaction to the database, as every write
// does: it fails with ErrStorageFull or ErrUnavailable while the storage
// cannot take writes, and records its outcome in the store's Health.
func (s *Store) Probe(ctx context.Context) error {
	if lowOnSpace(s.cfg.Path) {
		// A write may still fit in space SQLite holds already (a WAL
		// file it rewrites); the next one that needs more would fail.
		return s.health.Observe(fmt.Errorf("probe store: %w", &storageError{ErrStorageFull, fmt.Errorf("less than %d KiB free beside %s", lowSpaceAtLeast>>10, s.cfg.Path)}))
	}
	if err := s.leaveReadOnly(ctx); err != nil {
		return s.health.Observe(fmt.Errorf("probe store: %w", err))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL)"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO store_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at", timestamp(s.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("probe store: %w", err)
	}
	return nil
}

// Health returns the store's write health.
func (s *Store) Health() *Health { return &s.health }
