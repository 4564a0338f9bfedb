// Package location parses and validates where matchbox keeps its state:
// the --store URL (sqlite:///path/to.db or etcd://h1:2379,h2:2379/prefix),
// the older --db path, and the etcd connection flags. It is the one place
// these flags are checked; opening the store is the store packages' job.
package location

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kinds of store.
const (
	// SQLite is the embedded store, one file.
	SQLite = "sqlite"
	// Etcd is the store shared by several instances.
	Etcd = "etcd"
)

// Flags are the command-line flags that say where the state is.
type Flags struct {
	// Store is --store: a sqlite:// or etcd:// URL, or "" for the default.
	Store string
	// DB is --db, the SQLite file (kept from before --store), or "".
	DB string
	// DataDir is --data-dir; the default SQLite file is in it.
	DataDir string
	// CertFile and KeyFile are --etcd-cert-file and --etcd-key-file: the
	// client certificate presented to etcd.
	CertFile, KeyFile string
	// CAFile is --etcd-ca-file: the CA that signed etcd's server
	// certificates.
	CAFile string
	// Username is --etcd-username; PasswordFile is --etcd-password-file,
	// a file holding the password (a trailing newline is ignored).
	Username, PasswordFile string
}

// Location is a validated store location.
type Location struct {
	// Kind is SQLite or Etcd.
	Kind string
	// Path is the SQLite file (Kind SQLite).
	Path string
	// Etcd is the etcd connection (Kind Etcd).
	Etcd EtcdConfig
}

// EtcdConfig is how to reach etcd and where matchbox's keys are.
type EtcdConfig struct {
	// Endpoints are the members' client URLs (http:// or, with TLS,
	// https://), in the order given.
	Endpoints []string
	// Prefix is the key prefix every key of this installation is under,
	// without leading or trailing slash ("matchbox", "site-a/matchbox").
	Prefix string
	// TLS is set when any TLS file is given.
	TLS bool
	// CertFile, KeyFile and CAFile are the TLS files, "" when not given.
	CertFile, KeyFile, CAFile string
	// Username and Password authenticate to etcd; both "" when not used.
	Username, Password string
}

// String is the location for logs: the SQLite path, or the etcd URL
// (never the password).
func (l Location) String() string {
	if l.Kind == Etcd {
		hosts := make([]string, len(l.Etcd.Endpoints))
		for i, e := range l.Etcd.Endpoints {
			_, hosts[i], _ = strings.Cut(e, "://")
		}
		return "etcd://" + strings.Join(hosts, ",") + "/" + l.Etcd.Prefix
	}
	return "sqlite://" + l.Path
}

// Resolve validates f and returns the location it names. The errors name
// the flag at fault.
func Resolve(f Flags) (Location, error) {
	etcdFlags := f.etcdFlagsSet()
	if f.Store != "" && f.DB != "" {
		return Location{}, errors.New("--store and --db both given: use --store alone (--db PATH is --store sqlite://PATH)")
	}
	if f.Store == "" || strings.HasPrefix(f.Store, SQLite+":") {
		if len(etcdFlags) > 0 {
			return Location{}, fmt.Errorf("%s given with an SQLite store: it applies to --store etcd:// only", strings.Join(etcdFlags, ", "))
		}
		path := f.DB
		if f.Store != "" {
			p, err := parseSQLite(f.Store)
			if err != nil {
				return Location{}, fmt.Errorf("--store %q: %w", f.Store, err)
			}
			path = p
		}
		if path == "" {
			if f.DataDir == "" {
				return Location{}, errors.New("no store: give --store or --data-dir")
			}
			path = filepath.Join(f.DataDir, "matchbox.db")
		}
		return Location{Kind: SQLite, Path: path}, nil
	}
	if !strings.HasPrefix(f.Store, Etcd+"://") {
		scheme, _, ok := strings.Cut(f.Store, "://")
		if !ok {
			return Location{}, fmt.Errorf("--store %q: want a URL, sqlite:///path/to.db or etcd://host:2379,.../prefix", f.Store)
		}
		return Location{}, fmt.Errorf("--store %q: unknown scheme %q: want sqlite or etcd", f.Store, scheme)
	}
	cfg, err := parseEtcd(f.Store)
	if err != nil {
		return Location{}, fmt.Errorf("--store %q: %w", f.Store, err)
	}
	if err := f.etcdAuth(&cfg); err != nil {
		return Location{}, err
	}
	return Location{Kind: Etcd, Etcd: cfg}, nil
}

func (f Flags) etcdFlagsSet() []string {
	var set []string
	for _, fl := range []struct{ name, v string }{
		{"--etcd-cert-file", f.CertFile}, {"--etcd-key-file", f.KeyFile}, {"--etcd-ca-file", f.CAFile},
		{"--etcd-username", f.Username}, {"--etcd-password-file", f.PasswordFile},
	} {
		if fl.v != "" {
			set = append(set, fl.name)
		}
	}
	return set
}

// parseSQLite reads sqlite:///absolute/path or sqlite:relative/path.
func parseSQLite(raw string) (string, error) {
	rest := strings.TrimPrefix(raw, SQLite+":")
	if strings.HasPrefix(rest, "//") {
		rest = strings.TrimPrefix(rest, "//")
		if !strings.HasPrefix(rest, "/") {
			host, _, _ := strings.Cut(rest, "/")
			return "", fmt.Errorf("SQLite URL names host %q: want sqlite:///absolute/path or sqlite:relative/path", host)
		}
	}
	if strings.ContainsAny(rest, "?#") {
		return "", errors.New("SQLite URL with a query or fragment: want the file path alone")
	}
	if rest == "" || strings.HasSuffix(rest, "/") {
		return "", errors.New("SQLite URL without a file name")
	}
	return rest, nil
}

// parseEtcd reads etcd://host:port[,host:port...]/prefix.
func parseEtcd(raw string) (EtcdConfig, error) {
	rest := strings.TrimPrefix(raw, Etcd+"://")
	if strings.ContainsAny(rest, "?#") {
		return EtcdConfig{}, errors.New("etcd URL with a query or fragment: TLS and credentials are flags (--etcd-ca-file, --etcd-username, ...)")
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return EtcdConfig{}, errors.New("etcd URL with credentials: give --etcd-username and --etcd-password-file instead")
	}
	if hosts == "" {
		return EtcdConfig{}, errors.New("etcd URL without endpoints: want etcd://host:2379[,host:2379...]/prefix")
	}
	var cfg EtcdConfig
	seen := map[string]bool{}
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return EtcdConfig{}, fmt.Errorf("etcd endpoint %q: want host:port", h)
		}
		if host == "" {
			return EtcdConfig{}, fmt.Errorf("etcd endpoint %q: no host", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return EtcdConfig{}, fmt.Errorf("etcd endpoint %q: port %q is not a number from 1 to 65535", h, port)
		}
		if seen[h] {
			return EtcdConfig{}, fmt.Errorf("etcd endpoint %q given twice", h)
		}
		seen[h] = true
		cfg.Endpoints = append(cfg.Endpoints, h)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return EtcdConfig{}, errors.New("etcd URL without a key prefix: want etcd://host:2379/prefix (e.g. /matchbox), so that installations sharing etcd stay apart")
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return EtcdConfig{}, fmt.Errorf("etcd key prefix %q: empty, . or .. segment", prefix)
		}
	}
	cfg.Prefix = prefix
	return cfg, nil
}

// etcdAuth checks the TLS and password flags and completes cfg with them.
func (f Flags) etcdAuth(cfg *EtcdConfig) error {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return errors.New("--etcd-cert-file and --etcd-key-file go together: give both or neither")
	}
	for _, fl := range []struct{ name, path string }{
		{"--etcd-cert-file", f.CertFile}, {"--etcd-key-file", f.KeyFile}, {"--etcd-ca-file", f.CAFile},
	} {
		if fl.path == "" {
			continue
		}
		if _, err := os.Stat(fl.path); err != nil {
			return fmt.Errorf("%s: %w", fl.name, err)
		}
	}
	cfg.CertFile, cfg.KeyFile, cfg.CAFile = f.CertFile, f.KeyFile, f.CAFile
	cfg.TLS = f.CertFile != "" || f.CAFile != ""
	scheme := "http://"
	if cfg.TLS {
		scheme = "https://"
	}
	for i, e := range cfg.Endpoints {
		cfg.Endpoints[i] = scheme + e
	}
	if (f.Username == "") != (f.PasswordFile == "") {
		return errors.New("--etcd-username and --etcd-password-file go together: give both or neither")
	}
	if f.PasswordFile != "" {
		b, err := os.ReadFile(f.PasswordFile)
		if err != nil {
			return fmt.Errorf("--etcd-password-file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return fmt.Errorf("--etcd-password-file %s: empty password", f.PasswordFile)
		}
		cfg.Username, cfg.Password = f.Username, pw
	}
	return nil
}
