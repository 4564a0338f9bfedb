package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"matchbox/hardware/facts"
	"matchbox/matchbox"
	"matchbox/store"
	"matchbox/store/etcdstore"
	"matchbox/store/location"
)

// backend is what serve needs of a store: store.Backend and the fleet
// views of the console. The SQLite store and the etcd store implement it.
type backend interface {
	store.Backend
	CountMachinesByState(ctx context.Context) (map[matchbox.MachineState]int, error)
	FleetEvents(ctx context.Context, f store.EventFilter) ([]matchbox.Event, error)
}

var (
	_ backend = (*store.Store)(nil)
	_ backend = (*etcdstore.Store)(nil)

	_ hashedImporter = (*store.Store)(nil)
)

// openStore opens the store o.store names; the function returned closes it
// with its connections.
func openStore(ctx context.Context, o *serveOptions, log *slog.Logger) (backend, func() error, error) {
	if o.store.Kind != location.Etcd {
		st, err := store.Open(ctx, store.Config{Path: o.dbPath, Logger: log, ParseFact: facts.ParseFact, Synchronous: o.syncMode})
		if err != nil {
			return nil, nil, err
		}
		return st, st.Close, nil
	}
	cli, err := etcdClient(o.store.Etcd)
	if err != nil {
		return nil, nil, fmt.Errorf("--store %s: %w%s", o.store, err, whyUnanswered(err, o.store.Etcd))
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := etcdstore.Open(octx, etcdstore.Config{Client: cli, Prefix: o.store.Etcd.Prefix, ParseFact: facts.ParseFact, Logger: log, RequestTimeout: o.etcdRequestTimeout, MaxTxnOps: o.etcdMaxTxnOps})
	if err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("--store %s: %w%s", o.store, err, whyUnanswered(err, o.store.Etcd))
	}
	log.Info("store on etcd", "store", o.store.String())
	return st, func() error { return errors.Join(st.Close(), cli.Close()) }, nil
}

// whyUnanswered explains an etcd connection that timed out (err): the etcd
// client only says "context deadline exceeded" when no endpoint could be
// reached or none took the TLS handshake. Each endpoint is dialled once,
// with c's TLS files; the answer (": endpoint: reason; ...") is "" when err
// is not a timeout or every endpoint takes a connection.
func whyUnanswered(err error, c location.EtcdConfig) string {
	if !errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	var tc *tls.Config
	if c.TLS {
		var terr error
		if tc, terr = etcdTLS(c); terr != nil {
			return ""
		}
	}
	var why []string
	for _, ep := range c.Endpoints {
		_, host, _ := strings.Cut(ep, "://")
		d := &net.Dialer{Timeout: 3 * time.Second}
		var conn net.Conn
		var derr error
		if tc == nil {
			conn, derr = d.Dial("tcp", host)
		} else {
			cfg := tc.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(host)
			conn, derr = tls.DialWithDialer(d, "tcp", host, cfg)
		}
		if derr != nil {
			why = append(why, fmt.Sprintf("%s: %v", ep, derr))
			continue
		}
		conn.Close()
	}
	if len(why) == 0 {
		return ""
	}
	return " (" + strings.Join(why, "; ") + ")"
}

// etcdTLS returns the TLS configuration c's files make.
func etcdTLS(c location.EtcdConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca-file %s: no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert-file/--etcd-key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// etcdClient connects to etcd as c says (TLS, user).
func etcdClient(c location.EtcdConfig) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: 10 * time.Second,
		Username:    c.Username,
		Password:    c.Password,
		Logger:      zap.NewNop(),
		// A data-directory import is one transaction: gRPC's default
		// bound on a sent message (2 MiB) refused one of 10,000 groups
		// (3.9 MB). etcd's own --max-request-bytes (1.5 MiB by default)
		// still applies: raise it for large catalogs.
		MaxCallSendMsgSize: 64 << 20,
		MaxCallRecvMsgSize: 64 << 20,
	}
	if c.TLS {
		tc, err := etcdTLS(c)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	return cli, nil
}
