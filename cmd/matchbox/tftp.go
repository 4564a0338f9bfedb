package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"matchbox/dhcp"
	"matchbox/matchbox"
	"matchbox/tftp"
)

// tftpOptions are the flags of the read-only TFTP server of iPXE binaries.
type tftpOptions struct {
	addr string
	root string
}

func (t *tftpOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&t.addr, "tftp-addr", "", "UDP address of the read-only TFTP server, e.g. :69 (off when empty)")
	f.StringVar(&t.root, "tftp-root", "", "directory served over TFTP (default <assets-dir>/tftp)")
}

// startTFTP builds the TFTP server from its flags, binds it and adds it to
// the tasks of s; without --tftp-addr it does nothing.
func (s *services) startTFTP(t *tftpOptions) error {
	if t.addr == "" {
		return nil
	}
	root := t.root
	if root == "" {
		if s.opts.assetsDir == "" {
			return errors.New("--tftp-addr needs --tftp-root or an assets directory (its tftp/ folder is served)")
		}
		root = filepath.Join(s.opts.assetsDir, "tftp")
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return fmt.Errorf("--tftp-root %s: not a directory (put undionly.kpxe and ipxe.efi there: os-assets/get-ipxe)", root)
	}
	transfers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "matchbox_tftp_transfers_total",
		Help: "TFTP read requests by outcome (ok, error, size_probe, duplicate: a repeated request ignored while its transfer ran).",
	}, []string{"outcome"})
	sent := prometheus.NewCounter(prometheus.CounterOpts{Name: "matchbox_tftp_bytes_total", Help: "File bytes sent over TFTP."})
	resent := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "matchbox_tftp_retransmits_total",
		Help: "TFTP datagrams sent that the client did not acknowledge (sent again after the timeout, or a failed transfer's last).",
	})
	if err := errors.Join(s.registry.Register(transfers), s.registry.Register(sent), s.registry.Register(resent)); err != nil {
		return fmt.Errorf("tftp metrics: %w", err)
	}
	srv, err := tftp.New(tftp.Config{
		Root:   root,
		Addr:   t.addr,
		Logger: s.log.With("service", "tftp"),
		OnTransfer: func(ctx context.Context, tr tftp.Transfer) {
			outcome := "ok"
			switch {
			case tr.Duplicate:
				// Ignored while the first request's transfer ran: counted,
				// not put on the timeline again.
				transfers.WithLabelValues("duplicate").Inc()
				return
			case tr.SizeProbe():
				outcome = "size_probe"
			case tr.Err != nil:
				outcome = "error"
			}
			transfers.WithLabelValues(outcome).Inc()
			sent.Add(float64(tr.BytesSent))
			resent.Add(float64(tr.Retransmits))
			s.recordTFTP(ctx, tr)
		},
	})
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("--tftp-addr %s: %w", t.addr, err)
	}
	s.log.Info("tftp serving", "addr", srv.Addr().String(), "root", root)
	s.tasks = append(s.tasks, func(ctx context.Context) error {
		if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("tftp: %w", err)
		}
		return nil
	})
	return nil
}

// leaseFinder finds the stored lease on an address (the store's
// LeaseByIP).
type leaseFinder interface {
	LeaseByIP(ctx context.Context, ip netip.Addr) (dhcp.Lease, bool, error)
}

// tftpClients names the MAC behind a TFTP client's address: as the DHCP
// server saw it (either mode; nil when DHCP is off), else as leased by
// authoritative DHCP, before a restart included.
type tftpClients struct {
	seen   func(netip.Addr) (string, bool)
	leases leaseFinder
}

// mac returns the client's MAC, false when no one knows the address.
func (c tftpClients) mac(ctx context.Context, ip netip.Addr) (string, bool, error) {
	if c.seen != nil {
		if mac, ok := c.seen(ip); ok {
			return mac, true, nil
		}
	}
	lease, found, err := c.leases.LeaseByIP(ctx, ip)
	if err != nil || !found {
		return "", false, err
	}
	return lease.MAC, true, nil
}

// recordTFTP puts a transfer on the timeline of the machine using the
// client's address (see tftpClients). Transfers from other addresses are
// only logged.
func (s *services) recordTFTP(ctx context.Context, tr tftp.Transfer) {
	mac, ok, err := tftpClients{seen: s.clientMAC, leases: s.store}.mac(ctx, tr.RemoteAddr.Addr().Unmap())
	if err != nil {
		s.log.Debug("tftp: looking up the client's lease failed", "remote", tr.RemoteAddr, "err", err)
	}
	if !ok {
		return
	}
	detail := map[string]any{"file": tr.Filename, "bytes": tr.BytesSent, "blksize": tr.BlockSize, "duration_ms": tr.Duration.Milliseconds(), "remote": tr.RemoteAddr.String()}
	if tr.Err != nil {
		detail["error"] = tr.Err.Error()
	}
	s.recorder.Record(matchbox.BootEvent{MAC: mac, Type: "tftp.read", At: tr.Start, Detail: detail})
}
