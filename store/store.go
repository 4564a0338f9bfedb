// Package store keeps matchbox's state in SQLite: the declarative catalog
// (profiles, groups, templates), machines, their timelines and DHCP leases.
// Every write is one transaction; every catalog write builds and validates a
// new immutable matchbox.Snapshot and swaps it in only after the commit.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"matchbox/matchbox"
	"matchbox/store/internal/machineindex"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a Store.
type Config struct {
	// Path is the SQLite database file.
	Path string
	// ParseFact parses hardware-fact terms of groups; nil refuses groups
	// that have any.
	ParseFact matchbox.FactParser
	// Logger receives store logs; nil discards them.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous pragma: "FULL" (default: a
	// committed write survives power loss) or "NORMAL" (survives a crash of
	// the process).
	Synchronous string
}

// Store is the SQLite-backed state of matchbox. It is safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	write   *sql.DB // one connection: SQLite has one writer
	read    *sql.DB
	writeMu sync.Mutex // orders snapshot swaps with commits
	// catalogQueue holds the catalog writes waiting to be committed
	// together by the next writer to hold writeMu.
	catalogQueue catalogQueue
	snap         atomic.Pointer[matchbox.Snapshot]
	index        *machineindex.Index
	now          func() time.Time
	// syncMode is the synchronous pragma of every write but timeline
	// batches (see inTxRelaxed).
	syncMode string
	// leaseStmts are the lease writes, prepared on first use.
	leaseStmts leaseStmts
	// catalogStmts are the catalog writes, prepared on first use.
	catalogStmts catalogStmts
	// rowStmts are the timeline's multi-row INSERTs, prepared on first use.
	rowStmts rowStmts
	// health is degraded while writes fail for want of space or a
	// writable database.
	health Health
	// checkpointer copies the WAL into the database in the background.
	checkpointer *checkpointer
	// leaseFirst lets lease commits take the write connection before
	// timeline batches.
	leaseFirst leaseFirst
	// readOnly is the fallback of a database that could not be opened
	// for writing (readonly.go).
	readOnly readOnlyState
	// writeDSN opens the database for writing.
	writeDSN string
}

// Open opens (creating if needed) the database, applies pending schema
// migrations and builds the first snapshot.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("open store: no database path")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	syncMode := strings.ToUpper(cfg.Synchronous)
	if syncMode == "" {
		syncMode = "FULL"
	}
	if syncMode != "FULL" && syncMode != "NORMAL" {
		return nil, fmt.Errorf("open store: synchronous %q: want FULL or NORMAL", cfg.Synchronous)
	}
	dsn := func(extra string) string {
		return "file:" + cfg.Path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + syncMode + ")" + extra
	}
	// temp_store(MEMORY): the statement and savepoint journals (every
	// catalog write of a group commit runs in a savepoint) stay in memory
	// instead of temporary files written with a system call per page.
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate&_pragma=wal_autocheckpoint(0)&_pragma=temp_store(MEMORY)"))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{cfg: cfg, log: cfg.Logger, write: w, now: time.Now, syncMode: syncMode, writeDSN: dsn("")}
	rc, err := newReadConnector(dsn("&_pragma=query_only(1)"),
		"file:"+cfg.Path+"?mode=ro&readonly_shm=1&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=query_only(1)", &s.readOnly)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	s.read = sql.OpenDB(rc)
	s.read.SetMaxOpenConns(8)
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	snap, err := s.buildSnapshot(ctx, s.read)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: stored catalog is invalid: %w", cfg.Path, err)
	}
	s.snap.Store(snap)
	if err := s.loadIndex(ctx); err != nil {
		s.Close()
		return nil, err
	}
	ck, err := sql.Open("sqlite", dsn(""))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	ck.SetMaxOpenConns(1)
	s.checkpointer = newCheckpointer(ck, s.log, s.readOnly.on.Load)
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	var ckErr error
	if s.checkpointer != nil {
		ckErr = s.checkpointer.close()
	}
	return errors.Join(s.leaseStmts.close(), s.catalogStmts.close(), s.rowStmts.close(), ckErr, s.read.Close(), s.write.Close())
}

// Snapshot returns the current immutable catalog snapshot.
func (s *Store) Snapshot() *matchbox.Snapshot { return s.snap.Load() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	var current int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		err = classifySQLite(fmt.Errorf("read schema version: %w", err), s.cfg.Path)
		if Reason(err) == "" {
			return err
		}
		if current, err = s.enterReadOnly(ctx, err); err != nil {
			return err
		}
	}
	if current > len(names) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d): refusing to run an older matchbox on it", current, len(names))
	}
	if current < len(names) && s.readOnly.on.Load() {
		return fmt.Errorf("database schema version %d needs migration %s, which cannot be written: %w", current, names[current], s.readOnly.refusal())
	}
	for i := current; i < len(names); i++ {
		body, err := migrationFS.ReadFile(names[i])
		if err != nil {
			return fmt.Errorf("read migration %s: %w", names[i], err)
		}
		n, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(names[i], "migrations/"), "_", 2)[0])
		if err != nil || n != i+1 {
			return fmt.Errorf("migration %s is out of sequence (want number %d)", names[i], i+1)
		}
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("apply migration %s: %w", names[i], err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
				return fmt.Errorf("record migration %s: %w", names[i], err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.log.Info("applied schema migration", "migration", names[i])
	}
	return nil
}

// inTx runs fn in one write transaction, committing when it returns nil.
// A failure of the storage is returned wrapping ErrStorageFull or
// ErrUnavailable, and every outcome is recorded in the store's Health.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.readOnly.refusal(); err != nil {
		return s.health.Observe(err)
	}
	return s.observeWrite(classifySQLite(s.inTxRaw(ctx, fn), s.cfg.Path))
}

func (s *Store) inTxRaw(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// inTxRelaxed is inTx with SQLite's synchronous pragma at NORMAL for this
// transaction: its commit does not wait for the disk, and a power loss may
// lose it, but never corrupts the database (WAL). Timeline batches use it:
// they share the single writer with lease commits, which must not queue
// behind their fsyncs. The next FULL commit makes them durable too.
func (s *Store) inTxRelaxed(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.syncMode == "NORMAL" {
		return s.inTx(ctx, fn)
	}
	if err := s.readOnly.refusal(); err != nil {
		return s.health.Observe(err)
	}
	return s.observeWrite(classifySQLite(s.inTxRelaxedRaw(ctx, fn), s.cfg.Path))
}

func (s *Store) inTxRelaxedRaw(ctx context.Context, fn func(tx *sql.Tx) error) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("write connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return fmt.Errorf("relax synchronous: %w", err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = "+s.syncMode); err != nil {
			// A connection left relaxed must not serve lease commits.
			conn.Raw(func(any) error { return driver.ErrBadConn })
			s.log.Error("restoring synchronous mode failed; connection dropped", "err", err)
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTimestamp(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
