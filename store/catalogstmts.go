package store

import (
	"context"
	"database/sql"
	"sync"

	"matchbox/matchbox"
)

// catalogStmts are the catalog's writes (see catalogQueries), prepared on
// the write connection before the first batch that succeeds in preparing
// them, and run through the batch's transaction. A failed preparation is
// not kept: writes then run their statements unprepared and the next
// batch tries again.
type catalogStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt // query -> statement
	// unprepared counts queries asked for while prepared that were not.
	unprepared int
}

// catalogKinds are the kinds the catalog's tables hold.
var catalogKinds = [...]matchbox.Kind{matchbox.KindProfile, matchbox.KindGroup, matchbox.TemplateIgnition, matchbox.TemplateGeneric}

// catalogQueries returns every statement sqlCatalogTx writes with.
func catalogQueries() []string {
	var out []string
	for _, k := range catalogKinds {
		out = append(out, selectVersionQuery(k), insertQuery(k), updateQuery(k), deleteQuery(k, false), deleteQuery(k, true))
	}
	return out
}

// prepare prepares the statements not yet prepared, on db, which must not
// be in a transaction of the caller's (the write connection is one).
func (p *catalogStmts) prepare(ctx context.Context, db *sql.DB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		return
	}
	m := map[string]*sql.Stmt{}
	for _, q := range catalogQueries() {
		st, err := db.PrepareContext(context.WithoutCancel(ctx), q)
		if err != nil {
			closeStmts(m) // what preparing failed on is the error that counts
			return
		}
		m[q] = st
	}
	p.m = m
}

// get returns the statement of query, nil when it is not prepared.
func (p *catalogStmts) get(query string) *sql.Stmt {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.m[query]
	if st == nil && p.m != nil {
		p.unprepared++
	}
	return st
}

func (p *catalogStmts) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := closeStmts(p.m)
	p.m = nil
	return err
}

// closeStmts closes every statement of m and returns the first error.
func closeStmts[K comparable](m map[K]*sql.Stmt) error {
	var first error
	for _, st := range m {
		if err := st.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
