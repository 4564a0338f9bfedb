package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"matchbox/audit"
	"matchbox/bmc"
	"matchbox/boothttp"
	"matchbox/lifecycle"
	"matchbox/logclip"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/netlimit"
	"matchbox/signing"
	"matchbox/store"
	"matchbox/store/etcdstore"
	"matchbox/store/location"
	v011 "matchbox/v011"
	"matchbox/version"
)

// serveOptions are the flags of `matchbox serve`.
type serveOptions struct {
	dataDir string
	prune   pruneGuard
	// importSource is --import-source: the scope of data-directory imports.
	importSource    string
	dbPath          string
	assetsDir       string
	httpAddr        string
	httpMaxConns    int
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration
	syncMode        string
	debugAddr       string
	secretKeyFile   string
	agentKeyFile    string
	bmcTimeout      time.Duration
	bmcRetries      int
	bmcParallel     int
	bmcDrivers      []string
	// bootNetworks are the CIDRs whose boot requests are observed
	bootNetworks []string
	// bootRepeatInterval is how long a known machine's repeated identical
	// boot answers are counted instead of recorded (0: every one recorded).
	bootRepeatInterval time.Duration
	// provisioningCheck is how often provisioning deadlines are checked
	provisioningCheck time.Duration
	// TLS of the boot listener, signatures, v0.11 aliases
	compat compatOptions
	// the services beside the boot endpoints
	api  apiOptions
	dhcp dhcpOptions
	tftp tftpOptions
	// storeFlags are --store and the etcd connection flags; --db and
	// --data-dir join them in runServe.
	storeFlags location.Flags
	// store is the resolved --store location.
	store location.Location
	// instanceTTL is how long an instance stays listed after it stops
	// renewing its registration (etcd).
	instanceTTL        time.Duration
	etcdRequestTimeout time.Duration // --etcd-request-timeout
	etcdMaxTxnOps      int           // --etcd-max-txn-ops
}

// newServeCommand returns `matchbox serve`: its flags are the boot
// endpoints' and the store's, then those of each service beside them (API,
// DHCP, TFTP); buildServices wires them.
func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the boot endpoints (and DHCP, TFTP and the API when enabled)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.compat.resolveV011(cmd.Flags()); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/matchbox", "data directory: profiles/, groups/, ignition/, generic/ are imported at start")
	f.BoolVar(&o.prune.allow, "allow-prune", false, "let the data-directory import delete more file-imported objects than --import-prune-limit allows (all of them included)")
	f.StringVar(&o.importSource, "import-source", "", "name of this data directory's imports in the store (default HOSTNAME:ABSOLUTE-DATA-DIR): an import deletes only objects imported under the same name, so instances sharing an etcd store keep each other's")
	f.Float64Var(&o.prune.limit, "import-prune-limit", 0.5, "largest share (0 to 1) of the file-imported objects one import may delete without --allow-prune")
	f.StringVar(&o.dbPath, "db", "", "SQLite database file (default <data-dir>/matchbox.db); same as --store sqlite://PATH")
	f.StringVar(&o.storeFlags.Store, "store", "", "where the state is: sqlite:///path/to.db (default: --db) or etcd://host:2379[,host:2379...]/prefix")
	f.StringVar(&o.storeFlags.CertFile, "etcd-cert-file", "", "client certificate presented to etcd (with --etcd-key-file)")
	f.StringVar(&o.storeFlags.KeyFile, "etcd-key-file", "", "private key of --etcd-cert-file")
	f.StringVar(&o.storeFlags.CAFile, "etcd-ca-file", "", "CA bundle that signs etcd's server certificates (turns TLS on)")
	f.StringVar(&o.storeFlags.Username, "etcd-username", "", "etcd user (with --etcd-password-file)")
	f.StringVar(&o.storeFlags.PasswordFile, "etcd-password-file", "", "file holding the password of --etcd-username")
	f.DurationVar(&o.instanceTTL, "etcd-instance-ttl", 10*time.Second, "how long this instance stays listed by matchbox get instances after it stops (etcd lease TTL)")
	f.IntVar(&o.etcdMaxTxnOps, "etcd-max-txn-ops", etcdstore.DefaultMaxTxnOps, "etcd's --max-txn-ops: the most operations matchbox puts in one etcd transaction (raise both together to commit more leases per transaction on a busy DHCP server)")
	f.DurationVar(&o.etcdRequestTimeout, "etcd-request-timeout", etcdstore.DefaultRequestTimeout, "bound on every etcd request of the store, past which etcd is taken for unreachable (raise it to import a large data directory, which is one transaction)")
	f.StringVar(&o.assetsDir, "assets-dir", "", "directory served under /assets/ (default <data-dir>/assets; \"-\" disables)")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address for boot endpoints, API and metrics")
	f.IntVar(&o.httpMaxConns, "http-max-conns", 0, "connections --http-addr holds open at once, the last 1/16 kept for short requests (0: derived from the open-file limit)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown waits for requests in flight, and then for queued boot events to be written")
	f.StringVar(&o.syncMode, "db-synchronous", "FULL", "SQLite synchronous mode: FULL (writes survive power loss) or NORMAL")
	f.StringVar(&o.secretKeyFile, "secret-key-file", "", "key sealing BMC credentials at rest (32 bytes raw, hex or base64); without it credentials are refused")
	f.StringVar(&o.agentKeyFile, "agent-key-file", "", "key of the discovery agent's per-machine tokens (default <data-dir>/agent.key, created when missing)")
	f.DurationVar(&o.bmcTimeout, "bmc-timeout", 30*time.Second, "timeout of each BMC call")
	f.IntVar(&o.bmcRetries, "bmc-retries", 3, "retries of a BMC call after a transient failure")
	f.IntVar(&o.bmcParallel, "bmc-parallel", 8, "BMC sessions at once in bulk actions")
	f.StringSliceVar(&o.bmcDrivers, "bmc-driver-order", []string{"redfish", "ipmi"}, "drivers tried for BMCs that name none")
	f.StringSliceVar(&o.bootNetworks, "boot-networks", nil, "client CIDRs whose boot requests are recorded and move machine states (default: any); requests from elsewhere are answered and change nothing")
	f.DurationVar(&o.bootRepeatInterval, "boot-repeat-interval", boothttp.DefaultRepeatInterval, "how long a known machine's boot requests answered as its last recorded one are counted on that timeline row (count, last_at) instead of recorded each (0: every request is a row)")
	f.DurationVar(&o.provisioningCheck, "provisioning-check-interval", 15*time.Second, "how often machines still provisioning past their profile's provisioning_timeout are marked failed")
	f.StringVar(&o.debugAddr, "debug-addr", "", "listen address for Go's pprof profiling endpoints (off when empty; keep it on loopback)")
	o.compat.addFlags(f)
	o.api.addFlags(f)
	o.dhcp.addFlags(f)
	o.tftp.addFlags(f)
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	lv, _, err := v011.ParseLogLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	// Values are cut to logclip.Max bytes: many come from clients.
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: logclip.ReplaceAttr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// importDataDir reads the data directory and writes it to the store in one
// transaction.
//
// A store that records its imports (hashedImporter) skips the import when
// the directory's content, read by this same binary, is what it last
// imported and its catalog has not changed since: the import would change
// nothing.
func importDataDir(ctx context.Context, log *slog.Logger, st store.CatalogStore, dir, scope string, guard pruneGuard) error {
	hi, hashed := st.(hashedImporter)
	var hash string
	if hashed {
		var err error
		if hash, err = datadir.Hash(dir, version.Get().String()+" import-source "+scope); err != nil {
			return fmt.Errorf("data directory %s: %w", dir, err)
		}
		current, err := hi.ImportCurrent(ctx, hash)
		if err != nil {
			return fmt.Errorf("data directory %s: %w", dir, err)
		}
		if current {
			p, g, t := st.Snapshot().Counts()
			log.Info("data directory unchanged since its last import and catalog unchanged since: import skipped",
				"dir", dir, "profiles", p, "groups", g, "templates", t)
			return nil
		}
	}
	content, err := datadir.Read(dir)
	if err != nil {
		return fmt.Errorf("data directory %s:\n%w", dir, err)
	}
	for _, w := range content.Warnings {
		log.Warn("data directory", "warning", w)
	}
	objs := store.ObjectsOf(content)
	pruned, imported, err := importPrunes(ctx, st, scope, objs)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := guard.check(len(pruned), imported); err != nil {
		return fmt.Errorf("data directory %s: nothing imported: %w (would delete: %s)", dir, err, strings.Join(pruned, ", "))
	}
	var res store.ImportResult
	var snap *matchbox.Snapshot
	if hashed {
		res, snap, err = hi.ImportHashed(audit.WithActor(ctx, audit.ActorDataDir), scope, objs, hash)
	} else {
		res, snap, err = st.Import(audit.WithActor(ctx, audit.ActorDataDir), scope, objs)
	}
	if err != nil {
		return fmt.Errorf("data directory %s: nothing imported: %w", dir, err)
	}
	for _, name := range pruned {
		log.Warn("import deleted an object its file no longer provides", "object", name, "dir", dir)
	}
	p, g, t := snap.Counts()
	log.Info("imported data directory", "dir", dir, "import_source", scope, "created", res.Created, "updated", res.Updated,
		"unchanged", res.Unchanged, "deleted", res.Deleted, "profiles", p, "groups", g, "templates", t)
	for _, w := range snap.Warnings() {
		log.Warn("catalog warning", "warning", w)
	}
	return nil
}

// hashedImporter is a store that records the content hash of each
// data-directory import and can tell whether it is still current.
type hashedImporter interface {
	ImportCurrent(ctx context.Context, contentHash string) (bool, error)
	ImportHashed(ctx context.Context, scope string, objs []*store.Object, contentHash string) (store.ImportResult, *matchbox.Snapshot, error)
}

// importScope is the name of this instance's data-directory imports:
// --import-source, else the host name and the data directory's absolute
// path, which stay the same across restarts of one installation.
func importScope(flag, dataDir string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("--import-source not given and no host name to default it to: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("--import-source not given and --data-dir %s has no absolute path: %w", dataDir, err)
	}
	return host + ":" + abs, nil
}

func runServe(ctx context.Context, o *serveOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if lv, isV011, _ := v011.ParseLogLevel(o.logLevel); isV011 {
		o.compat.logLevelNote = fmt.Sprintf("--log-level %s (logrus) → %s", o.logLevel, strings.ToLower(lv.String()))
	}
	o.compat.logNotes(log)
	if err := checkDataDir(o.dataDir); err != nil {
		return err
	}
	sf := o.storeFlags
	sf.DB, sf.DataDir = o.dbPath, o.dataDir
	loc, err := location.Resolve(sf)
	if err != nil {
		return err
	}
	o.store = loc
	if loc.Kind == location.SQLite {
		o.dbPath = loc.Path
	}
	if o.assetsDir == "" {
		o.assetsDir = filepath.Join(o.dataDir, "assets")
		if _, err := os.Stat(o.assetsDir); err != nil {
			o.assetsDir = ""
		}
	} else if o.assetsDir == "-" {
		o.assetsDir = ""
	}
	wiring, err := buildServices(ctx, o, log)
	if err != nil {
		return err
	}
	defer wiring.close()
	return wiring.run(ctx)
}

// services is everything `serve` runs, wired together.
type services struct {
	opts     *serveOptions
	log      *slog.Logger
	store    backend
	recorder *store.Recorder
	// closeStore closes the store and its connections.
	closeStore func() error
	// leaseBatch is the DHCP allocator's batch (0: its default).
	leaseBatch int
	// instances lists the instances sharing the store; this one
	// registers when it serves.
	instances *instances
	// apiLn is the API's own listener (--api-addr), nil when it shares
	// the boot endpoints'.
	apiLn net.Listener
	boot  *boothttp.Server
	// signer signs the boot endpoints' answers (.sig, .asc); nil when off.
	signer *signing.Signer
	// httpTLS serves the boot listener over HTTPS; nil for plain HTTP.
	httpTLS  *tls.Config
	registry *prometheus.Registry
	router   *mux.Router
	// lifecycle runs enrollment, BMC actions and provisioning.
	lifecycle *lifecycle.Service
	// agentKey signs and verifies the discovery agent's tokens.
	agentKey []byte
	// clientMAC maps a client address to its MAC as DHCP saw it (nil when
	// DHCP is off); TFTP uses it to put transfers on timelines.
	clientMAC func(netip.Addr) (string, bool)
	// health is the store's write health; nil when the store has none.
	health *store.Health
	// recovered receives a value each time the store recovers (buffered:
	// a recovery nobody waits for is kept until someone does).
	recovered chan struct{}
	// background tasks started by run, each stopping when ctx ends
	tasks []func(ctx context.Context) error
}

// buildServices opens the store, imports the data directory and builds
// every service from its Config, in order: lifecycle, boot endpoints, API,
// DHCP, TFTP. This is the one place where they are wired together.
func buildServices(ctx context.Context, o *serveOptions, log *slog.Logger) (*services, error) {
	st, closeStore, err := openStore(ctx, o, log)
	if err != nil {
		return nil, err
	}
	s := &services{opts: o, log: log, store: st, closeStore: closeStore, registry: prometheus.NewRegistry(), router: mux.NewRouter()}
	s.instances = &instances{}
	if o.store.Kind == location.Etcd {
		if b, ok := st.(interface{ MaxLeaseBatch() int }); ok {
			s.leaseBatch = b.MaxLeaseBatch()
		}
		s.instances.shared, _ = st.(sharedInstances)
	}
	scope, err := importScope(o.importSource, o.dataDir)
	if err != nil {
		closeStore()
		return nil, err
	}
	// An import the storage cannot write (a full disk) does not stop the
	// start: matchbox serves the catalog the database holds, degraded, and
	// imports again once the store takes writes.
	importErr := importDataDir(ctx, log, st, o.dataDir, scope, o.prune)
	if importErr != nil && store.Reason(importErr) == "" {
		closeStore()
		return nil, importErr
	}
	rcfg := store.RecorderConfig{Logger: log, Discover: true, ShutdownWrites: o.shutdownTimeout}
	if o.store.Kind == location.Etcd {
		// Lease commits do not share a write connection with the
		// timeline there: one call per batch (split by the etcd store).
		rcfg.TxEvents = 512
	}
	s.recorder = store.NewRecorder(st, rcfg)
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "matchbox_events_dropped_total",
			Help: "Boot events not recorded because the recorder's queue was full.",
		}, func() float64 { return float64(s.recorder.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "matchbox_events_failed_total",
			Help: "Boot events lost to errors writing them to the store.",
		}, func() float64 { return float64(s.recorder.Failed()) }))
	if s.health, err = s.watchStoreHealth(st, log); err != nil {
		closeStore()
		return nil, err
	}
	if importErr != nil {
		if s.health == nil {
			closeStore()
			return nil, importErr
		}
		log.Warn("data directory not imported: the store cannot take writes; serving the catalog the database holds until the store recovers, then importing again",
			"dir", o.dataDir, "reason", store.Reason(importErr), "err", importErr)
		s.tasks = append(s.tasks, s.retryImport(func(ctx context.Context) error {
			return importDataDir(ctx, log, st, o.dataDir, scope, o.prune)
		}))
	}
	metrics, err := boothttp.NewMetrics(s.registry, st.Snapshot)
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	secrets, agentKey, err := loadKeys(o)
	if err != nil {
		closeStore()
		return nil, err
	}
	s.agentKey = agentKey
	bootNets, err := parseCIDRs(o.bootNetworks)
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("--boot-networks: %w", err)
	}
	lcMetrics, err := lifecycle.NewMetrics(s.registry)
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s.lifecycle, err = lifecycle.New(lifecycle.Config{
		Metrics:  lcMetrics,
		Store:    st,
		BMC:      bmc.New(bmc.Config{Timeout: o.bmcTimeout, Retries: o.bmcRetries, DriverOrder: o.bmcDrivers, Logger: log}),
		Secrets:  secrets,
		Logger:   log,
		Parallel: o.bmcParallel,
		AgentKey: agentKey,
		BootURL:  o.dhcp.bootURL,
	})
	if err != nil {
		closeStore()
		return nil, err
	}
	s.boot, err = boothttp.New(boothttp.Config{
		Snapshot:  st.Snapshot,
		Machines:  boothttp.IndexLookup{Index: st},
		Events:    s.recorder,
		AssetsDir: o.assetsDir,
		Lifecycle: s.lifecycle,
		Metrics:   metrics,
		Logger:    log,

		RepeatInterval: repeatInterval(o.bootRepeatInterval),

		BootNetworks: bootNets,
	})
	if err != nil {
		closeStore()
		return nil, err
	}
	if s.signer, err = o.compat.loadSigner(); err != nil {
		s.close()
		return nil, err
	}
	if s.signer != nil {
		log.Info("signing boot endpoints", "key", s.signer.KeyID(), "keyring", o.compat.keyRing)
	}
	if on, err := o.compat.httpTLS(); err != nil || on {
		if err == nil {
			s.httpTLS, err = loadServerTLS(o.compat.httpCertFile, o.compat.httpKeyFile)
		}
		if err != nil {
			s.close()
			return nil, err
		}
	}
	// Counts of known machines' repeated answers reach their timelines.
	s.tasks = append(s.tasks, s.boot.RunRepeats)
	if o.provisioningCheck > 0 {
		s.tasks = append(s.tasks, func(ctx context.Context) error { return s.lifecycle.Run(ctx, o.provisioningCheck) })
	}
	// The boot endpoints are answered by s.boot.Front ahead of the router;
	// the discovery agent's report is routed by startAPI.
	s.router.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	s.router.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet, http.MethodHead)
	if err := s.startAPI(&o.api); err != nil {
		s.close()
		return nil, err
	}
	if err := s.startDHCP(ctx, &o.dhcp); err != nil {
		s.close()
		return nil, err
	}
	if err := s.startTFTP(&o.tftp); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *services) close() {
	if s.lifecycle != nil {
		s.lifecycle.Close()
	}
	if s.boot != nil {
		s.boot.Close()
	}
	s.closeStore()
}

// run serves until ctx ends, then shuts down gracefully.
func (s *services) run(ctx context.Context) error {
	ln, err := s.listen("--http-addr", s.opts.httpAddr, "--http-max-conns", s.opts.httpMaxConns)
	if err != nil {
		return err
	}
	handler := s.boot.Front(s.router)
	if s.signer != nil {
		handler = s.signer.Front(s.boot.Paths(), handler)
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         s.httpTLS,
		ReadHeaderTimeout: 30 * time.Second,
		// Equal to ReadHeaderTimeout so that a request sets one read
		// deadline, not two: bodies here are small (API, at most
		// --api-max-body).
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 10 * time.Minute, // large assets on slow links
		IdleTimeout:  120 * time.Second,
		BaseContext:  func(net.Listener) context.Context { return ctx },
	}
	if s.opts.debugAddr != "" {
		dbg, err := net.Listen("tcp", s.opts.debugAddr)
		if err != nil {
			return fmt.Errorf("listen on --debug-addr %s: %w", s.opts.debugAddr, err)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		pm.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pm.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		dsrv := &http.Server{Handler: pm, ReadHeaderTimeout: 10 * time.Second}
		go dsrv.Serve(dbg)
		defer dsrv.Close()
		s.log.Info("profiling endpoints", "addr", dbg.Addr().String())
	}
	self, err := s.instances.register(ctx, listenAddrs(ln, s.apiLn), s.opts.dhcp.ranges, s.opts.instanceTTL)
	if err != nil {
		return err
	}
	s.log.Info("instance registered", "instance", self.ID, "addresses", self.Addresses, "shared", s.instances.shared != nil)
	recCtx, stopRecorder := context.WithCancel(context.WithoutCancel(ctx))
	recDone := make(chan struct{})
	go func() { s.recorder.Run(recCtx); close(recDone) }()

	errc := make(chan error, len(s.tasks)+1)
	taskCtx, stopTasks := context.WithCancel(ctx)
	var tasks sync.WaitGroup
	for _, t := range s.tasks {
		tasks.Add(1)
		go func() {
			defer tasks.Done()
			if err := t(taskCtx); err != nil && taskCtx.Err() == nil {
				errc <- err
			}
		}()
	}
	go func() {
		serve := srv.Serve
		if srv.TLSConfig != nil {
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()
	s.log.Info("matchbox serving", "http", ln.Addr().String(), "https", srv.TLSConfig != nil, "signed", s.signer != nil, "store", s.opts.store.String(), "data_dir", s.opts.dataDir, "assets_dir", s.opts.assetsDir)

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case runErr = <-errc:
		s.log.Error("service failed, shutting down", "err", runErr)
	}
	stopTasks()
	tasks.Wait()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("graceful shutdown incomplete", "err", err)
	}
	stopRecorder()
	<-recDone
	return runErr
}

// listen opens a TCP listener bounded by maxConns connections (0: a share of
// the open-file limit), so slow clients cannot exhaust the process's files.
func (s *services) listen(addrFlag, addr, maxFlag string, maxConns int) (net.Listener, error) {
	if maxConns == 0 {
		listeners := 1
		if s.opts.api.addr != "" {
			listeners = 2
		}
		maxConns = netlimit.DefaultMax(listeners)
	}
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", addrFlag, addr, err)
	}
	ln, err := netlimit.New(inner, netlimit.Config{Max: maxConns})
	if err != nil {
		inner.Close()
		return nil, fmt.Errorf("%s: %w", maxFlag, err)
	}
	s.log.Debug("connection limit", "listener", addrFlag, "max", maxConns)
	return ln, nil
}

// parseCIDRs parses --boot-networks.
func parseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR such as 10.0.0.0/24: %w", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// repeatInterval is boothttp's RepeatInterval for --boot-repeat-interval:
// 0 (record every boot request) is boothttp's negative.
func repeatInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
