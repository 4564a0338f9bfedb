package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"matchbox/internal/needs"
	"matchbox/internal/servetest"
	"matchbox/store"
	"matchbox/store/location"
	"matchbox/store/storetest"
)

func mustWriteFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdTLSAndAuth opens the store, as `serve --store etcd://…` does,
// on a real etcd member that takes only TLS clients with a certificate of
// its CA (--client-cert-auth) and has authentication enabled, with
// --etcd-cert-file, --etcd-key-file, --etcd-ca-file, --etcd-username and
// --etcd-password-file. A user whose role reads and writes only the
// store's prefix writes and reads back a profile. A wrong password, a
// user without rights on the prefix, and a missing CA file each fail to
// open with an error that says so.
func TestEtcdTLSAndAuth(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		needs.Skip(t, "etcd binary not installed (Debian: apt-get install etcd-server): cannot run a real etcd member")
	}
	dir := t.TempDir()
	pki := servetest.NewPKI(t, "etcd")

	clientURL := "https://127.0.0.1:" + freeTCPPort(t)
	peerURL := "http://127.0.0.1:" + freeTCPPort(t)
	cmd := exec.Command(bin, "--name", "m0", "--data-dir", filepath.Join(dir, "m0"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "m0="+peerURL, "--initial-cluster-state", "new",
		"--cert-file", pki.ServerCert, "--key-file", pki.ServerKey, "--trusted-ca-file", pki.CAFile,
		"--client-cert-auth", "--log-level", "error")
	logPath := filepath.Join(dir, "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	host := strings.TrimPrefix(clientURL, "https://")
	files := 0
	flags := func(prefix, user, password string, ca bool) location.Flags {
		f := location.Flags{Store: "etcd://" + host + "/" + prefix, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
		if ca {
			f.CAFile = pki.CAFile
		}
		if user != "" {
			files++
			f.Username, f.PasswordFile = user, filepath.Join(dir, fmt.Sprintf("password-%d", files))
			mustWriteFile(t, f.PasswordFile, []byte(password+"\n"))
		}
		return f
	}
	// The administrator, by certificate alone before authentication is
	// enabled: a user for matchbox with a role on its prefix, another
	// without one, then authentication on.
	admin, err := location.Resolve(flags("tls", "", "", true))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := etcdClient(admin.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Put(c, "/ready", "1")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("etcd with TLS did not answer within 30s: %v\n%s", err, b)
		}
	}
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "matchbox"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "matchbox", "/tls/", clientv3.GetPrefixRangeEnd("/tls/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "mb", "s3cret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "mb", "matchbox"); return err },
		func() error { _, err := cli.UserAdd(ctx, "nobody", "n0thing"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd setup step %d: %v", i, err)
		}
	}

	open := func(f location.Flags) (backend, func() error, error) {
		loc, err := location.Resolve(f)
		if err != nil {
			t.Fatal(err)
		}
		o := &serveOptions{store: loc, etcdRequestTimeout: 5 * time.Second, etcdMaxTxnOps: 128}
		return openStore(ctx, o, slog.New(slog.DiscardHandler))
	}
	st, closeStore, err := open(flags("tls", "mb", "s3cret", true))
	if err != nil {
		t.Fatalf("open the store with TLS, a client certificate and a password: %v", err)
	}
	if _, err := st.UpdateCatalog(ctx, func(c store.CatalogTx) error { _, err := c.Put(storetest.Profile("over-tls"), -1); return err }); err != nil {
		t.Fatalf("catalog write over TLS with authentication: %v", err)
	}
	if _, ok := st.Snapshot().Profile("over-tls"); !ok {
		t.Fatal("a profile written over TLS is not in the snapshot")
	}
	if err := closeStore(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		flags location.Flags
		want  string
	}{
		{"wrong password", flags("tls", "mb", "wrong", true), "authentication failed"},
		{"no rights on the prefix", flags("tls", "nobody", "n0thing", true), "permission denied"},
		{"no CA file", flags("tls", "mb", "s3cret", false), "x509: certificate signed by unknown authority"},
	} {
		st, closeStore, err := open(c.flags)
		if err == nil {
			closeStore()
			t.Errorf("%s: the store opened", c.name)
			continue
		}
		t.Logf("%s: %v", c.name, err)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
		_ = st
	}
}

// freeTCPPort returns a TCP port free on loopback now.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// TestWhyUnanswered: a timed-out etcd connection is explained per
// endpoint (here: nothing listens on it); any other error, or a reachable
// endpoint, adds nothing.
func TestWhyUnanswered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := "127.0.0.1:" + freeTCPPort(t)
	cfg := location.EtcdConfig{Endpoints: []string{"http://" + ln.Addr().String(), "http://" + closed}}
	got := whyUnanswered(fmt.Errorf("connect to etcd: %w", context.DeadlineExceeded), cfg)
	if !strings.Contains(got, "http://"+closed+": ") || !strings.Contains(got, "connection refused") || strings.Contains(got, ln.Addr().String()) {
		t.Errorf("whyUnanswered = %q, want the closed endpoint's connection refused only", got)
	}
	if got := whyUnanswered(errors.New("permission denied"), cfg); got != "" {
		t.Errorf("whyUnanswered of an answer = %q, want nothing", got)
	}
}
