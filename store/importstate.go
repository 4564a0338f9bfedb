package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"matchbox/matchbox"
)

// ImportCurrent reports whether the last data-directory import recorded
// contentHash (ImportHashed) and the catalog has not changed since: no
// profile, group or template was written or deleted by any path. Importing
// that same content again would then change nothing.
func (s *Store) ImportCurrent(ctx context.Context, contentHash string) (bool, error) {
	var hash string
	var importedRev, rev int64
	err := s.read.QueryRowContext(ctx, `SELECT i.content_hash, i.catalog_rev, r.rev
		FROM data_dir_import i, catalog_revision r WHERE i.id = 1 AND r.id = 1`).Scan(&hash, &importedRev, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read last data-directory import: %w", err)
	}
	return hash == contentHash && importedRev == rev, nil
}

// ImportHashed is Import, recording in the same transaction that the
// content hashing to contentHash was imported and the catalog revision the
// import left, for ImportCurrent.
func (s *Store) ImportHashed(ctx context.Context, scope string, objs []*Object, contentHash string) (ImportResult, *matchbox.Snapshot, error) {
	var res ImportResult
	snap, err := s.updateCatalog(ctx, func(c CatalogTx) error {
		var err error
		if res, err = ImportObjects(c, scope, objs); err != nil {
			return err
		}
		tx := c.(*sqlCatalogTx)
		_, err = tx.tx.ExecContext(tx.ctx, `INSERT INTO data_dir_import (id, content_hash, catalog_rev)
			SELECT 1, ?, rev FROM catalog_revision WHERE id = 1
			ON CONFLICT (id) DO UPDATE SET content_hash = excluded.content_hash, catalog_rev = excluded.catalog_rev`, contentHash)
		if err != nil {
			return fmt.Errorf("record data-directory import: %w", err)
		}
		return nil
	}, matchbox.NoNewDangling)
	return res, snap, err
}
