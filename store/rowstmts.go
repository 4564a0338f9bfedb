package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// rowInsert is a multi-row INSERT: head, then one tuple per row, then tail
// (an ON CONFLICT clause).
type rowInsert struct {
	head, tuple, tail string
	// width is the number of values of one tuple.
	width int
}

// query returns the statement for n rows.
func (r rowInsert) query(n int) string {
	var q strings.Builder
	q.Grow(len(r.head) + n*(len(r.tuple)+2) + len(r.tail))
	q.WriteString(r.head)
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(r.tuple)
	}
	q.WriteString(r.tail)
	return q.String()
}

// The timeline's multi-row INSERTs (appendEvents).
func machinesInsert() rowInsert {
	return rowInsert{"INSERT INTO machines (id, uuid, state, created_at, updated_at) VALUES ", "(?, ?, 'discovered', ?, ?)", " ON CONFLICT (id) DO NOTHING", 4}
}

func machineMACsInsert() rowInsert {
	return rowInsert{"INSERT INTO machine_macs (mac, machine_id) VALUES ", "(?, ?)", " ON CONFLICT (mac) DO NOTHING", 2}
}

func eventsInsert() rowInsert {
	return rowInsert{"INSERT INTO events (machine_id, at, type, detail) VALUES ", "(?, ?, ?, ?)", "", 4}
}

// rowsPerStatement bounds the rows of one multi-row INSERT.
const rowsPerStatement = 128

// rowChunks calls f with the sizes of the statements n rows are inserted
// with: as many of rowsPerStatement as fit, then the powers of two that
// make up the rest, largest first. The sizes are few, so each has a
// prepared statement (rowStmts).
func rowChunks(n int, f func(size int) error) error {
	for ; n >= rowsPerStatement; n -= rowsPerStatement {
		if err := f(rowsPerStatement); err != nil {
			return err
		}
	}
	for size := rowsPerStatement / 2; size >= 1; size /= 2 {
		if n >= size {
			if err := f(size); err != nil {
				return err
			}
			n -= size
		}
	}
	return nil
}

// rowStmts are the timeline's multi-row INSERTs prepared on the write
// connection, for every size rowChunks uses. Each transaction of a
// timeline batch parsed its INSERTs of up to 64 tuples afresh before (3.7 %
// of the server's CPU under a flood of new DHCP clients). They are
// prepared before the first batch that succeeds in preparing them, outside
// its transaction (the write connection is the only one); a failed
// preparation is not kept: the statements then run unprepared and the next
// batch tries again.
type rowStmts struct {
	mu sync.Mutex
	m  map[rowStmtKey]*sql.Stmt
}

type rowStmtKey struct {
	head string
	size int
}

// prepare prepares the statements, on db, when they are not prepared yet.
func (p *rowStmts) prepare(ctx context.Context, db *sql.DB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	m := map[rowStmtKey]*sql.Stmt{}
	for _, ins := range [...]rowInsert{machinesInsert(), machineMACsInsert(), eventsInsert()} {
		for size := rowsPerStatement; size >= 1; size /= 2 {
			st, err := db.PrepareContext(ctx, ins.query(size))
			if err != nil {
				closeStmts(m) // what preparing failed on is the error that counts
				return
			}
			m[rowStmtKey{ins.head, size}] = st
		}
	}
	p.m = m
}

// get returns the prepared statement of size rows of ins, nil when there is
// none.
func (p *rowStmts) get(ins rowInsert, size int) *sql.Stmt {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[rowStmtKey{ins.head, size}]
}

func (p *rowStmts) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := closeStmts(p.m)
	p.m = nil
	return err
}

// insertRows inserts n rows with ins, in the statements rowChunks sizes,
// prepared ones when stmts has them; row returns a row's values.
func insertRows(ctx context.Context, tx *sql.Tx, stmts *rowStmts, ins rowInsert, n int, row func(i int) []any) error {
	next := 0
	args := make([]any, 0, min(n, rowsPerStatement)*ins.width)
	return rowChunks(n, func(size int) error {
		args = args[:0]
		for i := next; i < next+size; i++ {
			args = append(args, row(i)...)
		}
		next += size
		var err error
		if st := stmts.get(ins, size); st != nil {
			_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, ins.query(size), args...)
		}
		return err
	})
}
