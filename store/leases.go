package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"matchbox/dhcp"
)

// The store keeps the DHCP leases of the authoritative server for
// dhcp.Allocator, which allocates in memory and writes through the three
// operations below (dhcp.LeaseStorage): only the SQL lives here.
var _ dhcp.LeaseStorage = (*Store)(nil)

// leaseStmts are the lease writes, prepared on the write connection by
// the first commit that succeeds in preparing them. A failed preparation
// (a full disk, an I/O error) is not kept: the next commit tries again,
// so that lease commits recover with the storage.
type leaseStmts struct {
	mu     sync.Mutex
	upsert *sql.Stmt
	del    *sql.Stmt
}

func (s *Store) prepareLeaseStmts(ctx context.Context) (*leaseStmts, error) {
	p := &s.leaseStmts
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.upsert != nil {
		return p, nil
	}
	ctx = context.WithoutCancel(ctx)
	upsert, err := s.write.PrepareContext(ctx, `INSERT INTO leases (ip, mac, hostname, expires_at, state, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, hostname = excluded.hostname, expires_at = excluded.expires_at,
		state = excluded.state, updated_at = excluded.updated_at`)
	if err != nil {
		return nil, fmt.Errorf("prepare lease write: %w", err)
	}
	del, err := s.write.PrepareContext(ctx, "DELETE FROM leases WHERE ip = ? AND mac = ?")
	if err != nil {
		upsert.Close()
		return nil, fmt.Errorf("prepare lease write: %w", err)
	}
	p.upsert, p.del = upsert, del
	return p, nil
}

func (p *leaseStmts) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.upsert != nil {
		errs = append(errs, p.upsert.Close())
	}
	if p.del != nil {
		errs = append(errs, p.del.Close())
	}
	return errors.Join(errs...)
}

// LoadLeases returns every stored lease, ordered by address text. A row
// whose address does not parse is skipped and logged.
func (s *Store) LoadLeases(ctx context.Context) ([]dhcp.Lease, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT ip, mac, hostname, expires_at, state FROM leases ORDER BY ip")
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	defer rows.Close()
	var out []dhcp.Lease
	for rows.Next() {
		lease, err := scanLease(rows)
		if err != nil {
			s.log.Warn("ignoring stored lease", "err", err)
			continue
		}
		out = append(out, lease)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	return out, nil
}

// scanLease reads a row of ip, mac, hostname, expires_at, state.
func scanLease(row interface{ Scan(...any) error }) (dhcp.Lease, error) {
	var ip, mac, host, state string
	var exp int64
	if err := row.Scan(&ip, &mac, &host, &exp, &state); err != nil {
		return dhcp.Lease{}, err
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return dhcp.Lease{}, fmt.Errorf("lease of %s: bad address %q", mac, ip)
	}
	return dhcp.Lease{IP: addr, MAC: mac, Hostname: host, Expires: time.Unix(exp, 0), State: dhcp.LeaseState(state)}, nil
}

// CommitLeases applies lease writes, in order, in one transaction on the
// write connection, at the store's synchronous mode (FULL by default: the
// commit waits for the disk, so an acknowledged lease survives a power
// loss). Expiry is stored in whole seconds. The unique index on the MAC of
// leases that are not declined refuses a second lease for a MAC; any error
// rolls the whole transaction back.
func (s *Store) CommitLeases(ctx context.Context, writes []dhcp.LeaseWrite) error {
	if err := s.readOnly.refusal(); err != nil {
		// Refused before preparing: nothing to prepare on a read-only store.
		return s.health.Observe(err)
	}
	// Timeline batches wait while this commit waits for the connection.
	begun := s.leaseFirst.arrive()
	defer begun()
	stmts, err := s.prepareLeaseStmts(ctx)
	if err != nil {
		return err
	}
	now := s.now().Unix()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		begun()
		up := tx.StmtContext(ctx, stmts.upsert)
		del := tx.StmtContext(ctx, stmts.del)
		for i := range writes {
			lease := &writes[i].Lease
			ip := lease.IP.String()
			if writes[i].Delete {
				if _, err := del.ExecContext(ctx, ip, lease.MAC); err != nil {
					return fmt.Errorf("free previous lease %s of %s: %w", ip, lease.MAC, err)
				}
				continue
			}
			if _, err := up.ExecContext(ctx, ip, lease.MAC, lease.Hostname, lease.Expires.Unix(), string(lease.State), now); err != nil {
				return fmt.Errorf("write lease %s of %s: %w", ip, lease.MAC, err)
			}
		}
		return nil
	})
}

// LeaseByIP returns the stored lease on an address, if any: the TFTP
// server names the machine behind a client address with it when the DHCP
// server has not seen the client since it started.
func (s *Store) LeaseByIP(ctx context.Context, ip netip.Addr) (dhcp.Lease, bool, error) {
	row := s.read.QueryRowContext(ctx, "SELECT ip, mac, hostname, expires_at, state FROM leases WHERE ip = ?", ip.String())
	lease, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return dhcp.Lease{}, false, nil
	}
	if err != nil {
		return dhcp.Lease{}, false, fmt.Errorf("look up the lease on %s: %w", ip, err)
	}
	return lease, true, nil
}
