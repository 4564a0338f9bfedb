package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"matchbox/audit"
)

// AuditStore keeps the audit trail. Changes made through a store's own
// writes are recorded by the store, in their transaction, with the actor
// their context names (audit.WithActor); RecordAudit stores changes made
// elsewhere (the API's token file).
type AuditStore interface {
	// Audit returns the records f selects, oldest first.
	Audit(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	// RecordAudit stores records of changes made outside the store, with
	// their At set to now when zero, and logs each one.
	RecordAudit(ctx context.Context, recs ...audit.Record) error
}

// auditTimeFormat has a fixed width, so that stored times compare as
// strings in the order of time.
const auditTimeFormat = "2006-01-02T15:04:05.000000000Z"

// auditLog is the records of one transaction, written into it as they
// come and logged once it commits.
type auditLog struct {
	actor string
	at    time.Time
	recs  []audit.Record
}

func newAuditLog(ctx context.Context, now time.Time) *auditLog {
	return &auditLog{actor: audit.Actor(ctx), at: now.UTC()}
}

// add writes a record of a change into tx.
func (l *auditLog) add(ctx context.Context, tx *sql.Tx, r audit.Record) error {
	if l == nil {
		return nil
	}
	if r.Actor == "" {
		r.Actor = l.actor
	}
	if r.At.IsZero() {
		r.At = l.at
	}
	if err := insertAudit(ctx, tx, &r); err != nil {
		return err
	}
	l.recs = append(l.recs, r)
	return nil
}

func insertAudit(ctx context.Context, tx *sql.Tx, r *audit.Record) error {
	err := tx.QueryRowContext(ctx, `INSERT INTO audit (at, actor, action, kind, object_id, version_before, version_after, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.At.UTC().Format(auditTimeFormat), r.Actor, r.Action, r.Kind, r.Object, r.VersionBefore, r.VersionAfter, r.Detail).Scan(&r.ID)
	if err != nil {
		return fmt.Errorf("record audit of %s %s %q: %w", r.Action, r.Kind, r.Object, err)
	}
	return nil
}

// logAudit logs committed records, one INFO line each.
func (s *Store) logAudit(ctx context.Context, l *auditLog) {
	if l == nil {
		return
	}
	for _, r := range l.recs {
		s.log.InfoContext(ctx, "audit", r.LogAttrs()...)
	}
}

// RecordAudit stores records of changes made outside the store in one
// transaction and logs each one.
func (s *Store) RecordAudit(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	l := newAuditLog(ctx, s.now())
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, r := range recs {
			if err := l.add(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.logAudit(ctx, l)
	return nil
}

// Audit returns the audit records f selects, oldest first.
func (s *Store) Audit(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	var where []string
	var args []any
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if f.Object != "" {
		where, args = append(where, "object_id = ?"), append(args, f.Object)
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.Since.UTC().Format(auditTimeFormat))
	}
	if f.After > 0 {
		where, args = append(where, "id > ?"), append(args, f.After)
	}
	q := "SELECT id, at, actor, action, kind, object_id, version_before, version_after, detail FROM audit"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit records: %w", err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var at string
		if err := rows.Scan(&r.ID, &at, &r.Actor, &r.Action, &r.Kind, &r.Object, &r.VersionBefore, &r.VersionAfter, &r.Detail); err != nil {
			return nil, fmt.Errorf("read audit records: %w", err)
		}
		r.At, _ = time.Parse(auditTimeFormat, at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit records: %w", err)
	}
	return out, nil
}
