package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"matchbox/audit"
	"matchbox/matchbox"
)

// Errors returned by catalog writes; test with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrVersionConflict = errors.New("version conflict")
	ErrExists          = errors.New("already exists")
)

// Object is one stored catalog object with its version and origin.
type Object struct {
	Kind    matchbox.Kind
	ID      string // profile or group id, template name
	Version int64
	Source  string // data-directory file it was imported from, or ""
	// Scope names the data directory (instance and path) that imported
	// the object, "" for objects written through the API and objects
	// imported before scopes: an import deletes only its own scope's
	// objects (see ImportObjects).
	Scope string
	// Exactly one of these is set, according to Kind.
	Profile  *matchbox.Profile
	Group    *matchbox.Group
	Template *matchbox.Template
}

// CatalogTx is a catalog transaction: what UpdateCatalog and ViewCatalog
// hand their function. It is the catalog's seam between stores (SQLite
// here; etcd planned): every implementation honours the same versions and
// errors (ErrNotFound, ErrExists, ErrVersionConflict).
type CatalogTx interface {
	// Get returns one object, or an error wrapping ErrNotFound.
	Get(kind matchbox.Kind, id string) (*Object, error)
	// List returns every object of a kind, ordered by id.
	List(kind matchbox.Kind) ([]*Object, error)
	// Put creates or replaces an object. ifVersion 0 writes
	// unconditionally; -1 requires that the object does not exist; a
	// positive value requires the stored version to equal it. It returns
	// the new version.
	Put(obj *Object, ifVersion int64) (int64, error)
	// Delete removes an object; ifVersion as for Put (0: unconditional).
	Delete(kind matchbox.Kind, id string, ifVersion int64) error
}

// sqlCatalogTx is a CatalogTx over an SQLite transaction. The snapshot
// built from the result of a write is validated before the commit: a write
// that would leave the catalog invalid (identical selectors, a missing
// profile) rolls back.
type sqlCatalogTx struct {
	ctx context.Context
	tx  *sql.Tx
	now string
	// changes are the objects written and deleted, as stored, in order:
	// the new snapshot is the current one with them applied.
	changes []matchbox.Change
	audit   *auditLog // nil in read transactions
	// stmts are the prepared writes; nil runs them unprepared.
	stmts *catalogStmts
}

// exec runs query in the transaction, prepared when it is.
func (c *sqlCatalogTx) exec(query string, args ...any) (sql.Result, error) {
	if st := c.stmts.get(query); st != nil {
		return c.tx.StmtContext(c.ctx, st).ExecContext(c.ctx, args...)
	}
	return c.tx.ExecContext(c.ctx, query, args...)
}

// queryRow runs query in the transaction, prepared when it is.
func (c *sqlCatalogTx) queryRow(query string, args ...any) *sql.Row {
	if st := c.stmts.get(query); st != nil {
		return c.tx.StmtContext(c.ctx, st).QueryRowContext(c.ctx, args...)
	}
	return c.tx.QueryRowContext(c.ctx, query, args...)
}

// selectVersionQuery reads the version of an object of kind by id.
func selectVersionQuery(kind matchbox.Kind) string {
	table, idCol, _ := tableOf(kind)
	where, _ := kindFilter(kind)
	return "SELECT version FROM " + table + " WHERE " + idCol + " = ?" + where
}

// insertQuery creates an object of kind at version 1.
func insertQuery(kind matchbox.Kind) string {
	if kind == matchbox.TemplateIgnition || kind == matchbox.TemplateGeneric {
		return "INSERT INTO templates (kind, name, content, version, source, import_scope, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?)"
	}
	table, _, _ := tableOf(kind)
	return "INSERT INTO " + table + " (id, spec, version, source, import_scope, updated_at) VALUES (?, ?, 1, ?, ?, ?)"
}

// updateQuery replaces an object of kind, moving its version on.
func updateQuery(kind matchbox.Kind) string {
	table, idCol, _ := tableOf(kind)
	where, _ := kindFilter(kind)
	col := "spec"
	if table == "templates" {
		col = "content"
	}
	return "UPDATE " + table + " SET " + col + " = ?, version = version + 1, source = ?, import_scope = ?, updated_at = ? WHERE " + idCol + " = ?" + where
}

// deleteQuery removes an object of kind, at a given version when
// ifVersion, returning the version removed.
func deleteQuery(kind matchbox.Kind, ifVersion bool) string {
	table, idCol, _ := tableOf(kind)
	where, _ := kindFilter(kind)
	q := "DELETE FROM " + table + " WHERE " + idCol + " = ?" + where
	if ifVersion {
		q += " AND version = ?"
	}
	return q + " RETURNING version"
}

func tableOf(kind matchbox.Kind) (table, idCol string, err error) {
	switch kind {
	case matchbox.KindProfile:
		return "profiles", "id", nil
	case matchbox.KindGroup:
		return "groups", "id", nil
	case matchbox.TemplateIgnition, matchbox.TemplateGeneric:
		return "templates", "name", nil
	}
	return "", "", fmt.Errorf("unknown kind %q", kind)
}

func kindFilter(kind matchbox.Kind) (string, []any) {
	if kind == matchbox.TemplateIgnition || kind == matchbox.TemplateGeneric {
		return " AND kind = ?", []any{string(kind)}
	}
	return "", nil
}

// Get returns one object.
func (c *sqlCatalogTx) Get(kind matchbox.Kind, id string) (*Object, error) {
	objs, err := listObjects(c.ctx, c.tx, kind, id)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
	}
	return objs[0], nil
}

// List returns every object of a kind, ordered by id.
func (c *sqlCatalogTx) List(kind matchbox.Kind) ([]*Object, error) {
	return listObjects(c.ctx, c.tx, kind, "")
}

// Put creates or replaces an object. ifVersion 0 writes unconditionally;
// -1 requires that the object does not exist; a positive value requires the
// stored version to equal it. It returns the new version.
func (c *sqlCatalogTx) Put(obj *Object, ifVersion int64) (int64, error) {
	_, _, err := tableOf(obj.Kind)
	if err != nil {
		return 0, err
	}
	id, spec, err := obj.Encode()
	if err != nil {
		return 0, err
	}
	if obj.Template != nil {
		if err := CheckTemplate(obj); err != nil {
			return 0, err
		}
	}
	_, args := kindFilter(obj.Kind)
	var cur int64
	err = c.queryRow(selectVersionQuery(obj.Kind), append([]any{id}, args...)...).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if ifVersion > 0 {
			return 0, fmt.Errorf("%s %q: %w", obj.Kind, id, ErrNotFound)
		}
		if obj.Kind == matchbox.TemplateIgnition || obj.Kind == matchbox.TemplateGeneric {
			_, err = c.exec(insertQuery(obj.Kind), string(obj.Kind), id, spec, obj.Source, obj.Scope, c.now)
		} else {
			_, err = c.exec(insertQuery(obj.Kind), id, spec, obj.Source, obj.Scope, c.now)
		}
		if err != nil {
			return 0, fmt.Errorf("insert %s %q: %w", obj.Kind, id, err)
		}
		if err := c.record(obj.Kind, id, spec); err != nil {
			return 0, err
		}
		if err := c.audited(audit.ActionCreate, obj.Kind, id, 0, 1); err != nil {
			return 0, err
		}
		return 1, nil
	case err != nil:
		return 0, fmt.Errorf("read %s %q: %w", obj.Kind, id, err)
	}
	if ifVersion == -1 {
		return 0, fmt.Errorf("%s %q: %w", obj.Kind, id, ErrExists)
	}
	if ifVersion > 0 && ifVersion != cur {
		return 0, fmt.Errorf("%s %q is at version %d, not %d: %w", obj.Kind, id, cur, ifVersion, ErrVersionConflict)
	}
	_, err = c.exec(updateQuery(obj.Kind),
		append([]any{spec, obj.Source, obj.Scope, c.now, id}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("update %s %q: %w", obj.Kind, id, err)
	}
	if err := c.record(obj.Kind, id, spec); err != nil {
		return 0, err
	}
	if err := c.audited(audit.ActionUpdate, obj.Kind, id, cur, cur+1); err != nil {
		return 0, err
	}
	return cur + 1, nil
}

// record notes an object written as stored (spec decoded as the snapshot
// of a full load would decode it), or deleted when spec is nil.
func (c *sqlCatalogTx) record(kind matchbox.Kind, id, spec string) error {
	ch := matchbox.Change{Kind: kind, ID: id}
	var err error
	switch kind {
	case matchbox.KindProfile:
		ch.Profile = new(matchbox.Profile)
		err = json.Unmarshal([]byte(spec), ch.Profile)
	case matchbox.KindGroup:
		ch.Group = new(matchbox.Group)
		err = json.Unmarshal([]byte(spec), ch.Group)
	default:
		ch.Template = &matchbox.Template{Kind: kind, Name: id, Content: spec}
	}
	if err != nil {
		return fmt.Errorf("decode written %s %q: %w", kind, id, err)
	}
	c.changes = append(c.changes, ch)
	return nil
}

// Delete removes an object; ifVersion as for Put (0: unconditional).
func (c *sqlCatalogTx) Delete(kind matchbox.Kind, id string, ifVersion int64) error {
	_, _, err := tableOf(kind)
	if err != nil {
		return err
	}
	_, args := kindFilter(kind)
	qargs := append([]any{id}, args...)
	if ifVersion > 0 {
		qargs = append(qargs, ifVersion)
	}
	var cur int64
	err = c.queryRow(deleteQuery(kind, ifVersion > 0), qargs...).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := c.Get(kind, id); err != nil {
			return err
		}
		return fmt.Errorf("%s %q: %w", kind, id, ErrVersionConflict)
	}
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", kind, id, err)
	}
	c.changes = append(c.changes, matchbox.Change{Kind: kind, ID: id})
	return c.audited(audit.ActionDelete, kind, id, cur, 0)
}

// audited writes the audit record of a change into the transaction.
func (c *sqlCatalogTx) audited(action string, kind matchbox.Kind, id string, before, after int64) error {
	return c.audit.add(c.ctx, c.tx, audit.Record{Action: action, Kind: string(kind), Object: id, VersionBefore: before, VersionAfter: after})
}

// Encode returns the object's id and its stored form: the JSON of a
// profile or group, a template's content as is. Every store
// implementation stores objects in this form.
func (obj *Object) Encode() (id, spec string, err error) {
	var v any
	switch obj.Kind {
	case matchbox.KindProfile:
		if obj.Profile == nil {
			return "", "", errors.New("profile object without profile")
		}
		id, v = obj.Profile.ID, obj.Profile
	case matchbox.KindGroup:
		if obj.Group == nil {
			return "", "", errors.New("group object without group")
		}
		id, v = obj.Group.ID, obj.Group
	case matchbox.TemplateIgnition, matchbox.TemplateGeneric:
		if obj.Template == nil {
			return "", "", errors.New("template object without template")
		}
		return obj.Template.Name, obj.Template.Content, nil
	default:
		return "", "", fmt.Errorf("unknown kind %q", obj.Kind)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", "", fmt.Errorf("encode %s %q: %w", obj.Kind, id, err)
	}
	return id, string(b), nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func listObjects(ctx context.Context, q querier, kind matchbox.Kind, id string) ([]*Object, error) {
	table, idCol, err := tableOf(kind)
	if err != nil {
		return nil, err
	}
	col := "spec"
	if table == "templates" {
		col = "content"
	}
	where, args := kindFilter(kind)
	query := "SELECT " + idCol + ", " + col + ", version, source, import_scope FROM " + table + " WHERE 1=1" + where
	if id != "" {
		query += " AND " + idCol + " = ?"
		args = append(args, id)
	}
	rows, err := q.QueryContext(ctx, query+" ORDER BY "+idCol, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	defer rows.Close()
	var out []*Object
	for rows.Next() {
		var oid, spec, source, scope string
		var version int64
		if err := rows.Scan(&oid, &spec, &version, &source, &scope); err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		o := &Object{Kind: kind, ID: oid, Version: version, Source: source, Scope: scope}
		switch kind {
		case matchbox.KindProfile:
			o.Profile = new(matchbox.Profile)
			err = json.Unmarshal([]byte(spec), o.Profile)
		case matchbox.KindGroup:
			o.Group = new(matchbox.Group)
			err = json.Unmarshal([]byte(spec), o.Group)
		default:
			o.Template = &matchbox.Template{Kind: kind, Name: oid, Content: spec}
		}
		if err != nil {
			return nil, fmt.Errorf("decode stored %s %q: %w", kind, oid, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return out, nil
}

// loadCatalog reads the whole catalog through q.
func loadCatalog(ctx context.Context, q querier) (matchbox.Catalog, error) {
	var c matchbox.Catalog
	for _, kind := range matchbox.Kinds() {
		objs, err := listObjects(ctx, q, kind, "")
		if err != nil {
			return c, err
		}
		for _, o := range objs {
			switch kind {
			case matchbox.KindProfile:
				c.Profiles = append(c.Profiles, *o.Profile)
			case matchbox.KindGroup:
				c.Groups = append(c.Groups, *o.Group)
			default:
				c.Templates = append(c.Templates, *o.Template)
			}
		}
	}
	return c, nil
}

func (s *Store) buildSnapshot(ctx context.Context, q querier) (*matchbox.Snapshot, error) {
	c, err := loadCatalog(ctx, q)
	if err != nil {
		return nil, err
	}
	return matchbox.Build(c, s.cfg.ParseFact)
}

// UpdateCatalog runs fn in one write transaction, then builds a snapshot of
// the resulting catalog. If fn fails or the catalog would be invalid,
// nothing is written and the error says why; otherwise the transaction
// commits and the new snapshot becomes current. It returns that snapshot.
//
// The resulting catalog may hold dangling references (a group naming a
// missing profile, a profile naming a missing template): each one the write
// introduces is logged as a warning.
func (s *Store) UpdateCatalog(ctx context.Context, fn func(c CatalogTx) error) (*matchbox.Snapshot, error) {
	return s.updateCatalog(ctx, fn, nil)
}

// maxAppliedChanges is how many changed objects a write may hold for its
// snapshot to be the current one with the changes applied; a larger write
// (an import) rebuilds the snapshot from the stored catalog.
const maxAppliedChanges = 64

// updateCatalog is UpdateCatalog with a check of the change from the
// current snapshot to the new one, which can refuse it. The write is
// committed with the catalog writes waiting at the same time, in one
// transaction (see commitCatalogWrites); it returns once that transaction
// has committed or failed.
func (s *Store) updateCatalog(ctx context.Context, fn func(c CatalogTx) error, check func(before, after *matchbox.Snapshot) error) (*matchbox.Snapshot, error) {
	w := &catalogWrite{ctx: ctx, fn: fn, check: check, done: make(chan struct{})}
	s.catalogQueue.push(w)
	s.writeMu.Lock()
	for !w.finished() {
		s.commitCatalogWrites(s.catalogQueue.take(maxCatalogBatch))
	}
	s.writeMu.Unlock()
	return w.result()
}

// ViewCatalog runs fn against a read transaction.
func (s *Store) ViewCatalog(ctx context.Context, fn func(c CatalogTx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(&sqlCatalogTx{ctx: ctx, tx: tx})
}

// ImportResult counts what an import changed.
type ImportResult struct {
	Created, Updated, Unchanged, Deleted int
}

// Import writes the objects read from a data directory in one transaction:
// each object is created or updated (its source and scope recorded), and
// objects that an earlier import of the same scope brought from a file
// that no longer provides them are deleted (see ImportObjects). Objects
// written through the API are left alone. Nothing is written if the
// resulting catalog is invalid or holds dangling references the catalog
// did not hold before.
func (s *Store) Import(ctx context.Context, scope string, objs []*Object) (ImportResult, *matchbox.Snapshot, error) {
	var res ImportResult
	snap, err := s.updateCatalog(ctx, func(c CatalogTx) error {
		var err error
		res, err = ImportObjects(c, scope, objs)
		return err
	}, matchbox.NoNewDangling)
	return res, snap, err
}

// ImportObjects writes a data directory's objects through c with scope
// (the identity of the data directory: instance and path), counting what
// it creates, updates and leaves unchanged, and deletes the objects that
// this scope imported and objs no longer provides. Several instances
// sharing a store each import their own data directory without deleting
// each other's objects. Objects imported before scopes (a source, no
// scope) are deleted by any import that does not provide them, as before.
// An object that another scope imported with the same content and file
// is left unchanged and keeps its scope; with other content, this import
// takes it over. Every store runs its Import through it inside one
// catalog transaction.
func ImportObjects(c CatalogTx, scope string, objs []*Object) (ImportResult, error) {
	var res ImportResult
	seen := map[matchbox.Kind]map[string]bool{}
	for _, o := range objs {
		id, spec, err := o.Encode()
		if err != nil {
			return res, err
		}
		if seen[o.Kind] == nil {
			seen[o.Kind] = map[string]bool{}
		}
		seen[o.Kind][id] = true
		cur, err := c.Get(o.Kind, id)
		switch {
		case err == nil:
			if _, curSpec, encErr := cur.Encode(); encErr == nil && curSpec == spec && cur.Source == o.Source && (cur.Scope == scope || cur.Scope != "") {
				res.Unchanged++
				continue
			}
			res.Updated++
		case errors.Is(err, ErrNotFound):
			res.Created++
		default:
			return res, err
		}
		w := *o
		w.Scope = scope
		if _, err := c.Put(&w, 0); err != nil {
			return res, err
		}
	}
	for _, kind := range matchbox.Kinds() {
		existing, err := c.List(kind)
		if err != nil {
			return res, err
		}
		for _, o := range existing {
			if o.Source != "" && (o.Scope == scope || o.Scope == "") && !seen[kind][o.ID] {
				if err := c.Delete(kind, o.ID, 0); err != nil {
					return res, err
				}
				res.Deleted++
			}
		}
	}
	return res, nil
}

// CheckTemplate applies the write-time check of a template (strict Butane
// with sample data) and reports a refusal as a validation problem, located
// at file:line when the template comes from a data-directory file. Every
// store calls it before writing a template.
func CheckTemplate(obj *Object) error {
	err := matchbox.CheckTemplate(obj.Template)
	if err == nil {
		return nil
	}
	msg := err.Error()
	var te *matchbox.TemplateError
	if obj.Source != "" && errors.As(err, &te) {
		if te.Line > 0 {
			msg = fmt.Sprintf("%s:%d: %v", obj.Source, te.Line, te.Err)
		} else {
			msg = fmt.Sprintf("%s: %v", obj.Source, te.Err)
		}
	}
	return &matchbox.ValidationError{Problems: []string{msg}}
}
