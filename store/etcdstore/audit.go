package etcdstore

import (
	"context"
	"fmt"

	"matchbox/audit"
	"matchbox/store"
)

// Audit is not offered yet by the etcd store: it answers an error wrapping
// store.ErrNotSupported. Its catalog writes record no audit records.
func (s *Store) Audit(context.Context, audit.Filter) ([]audit.Record, error) {
	return nil, fmt.Errorf("etcd store: audit records: %w", store.ErrNotSupported)
}

// RecordAudit is not offered yet by the etcd store: it answers an error
// wrapping store.ErrNotSupported.
func (s *Store) RecordAudit(context.Context, ...audit.Record) error {
	return fmt.Errorf("etcd store: audit records: %w", store.ErrNotSupported)
}
