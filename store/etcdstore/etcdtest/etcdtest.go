// Package etcdtest runs a real etcd cluster on loopback for tests: the
// etcd binary (Debian's etcd-server), one process per member, each with
// its own data directory and free ports, stopped when the test ends.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"matchbox/internal/needs"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	t         testing.TB
	bin       string
	opts      Options
	members   []*member
}

// member is one etcd process; cmd is nil while the member is stopped.
type member struct {
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options place a cluster elsewhere than on the test's loopback.
type Options struct {
	// Netns runs every member inside this network namespace (with `ip
	// netns exec`); empty runs them in the test's own.
	Netns string
	// Host is the address the members listen on (default 127.0.0.1).
	Host string
	// Args are more flags for every member (--max-txn-ops 1024, say).
	Args []string
}

// Start starts an n-member cluster on loopback and waits until it answers;
// it skips the test when the etcd binary is not installed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, n, Options{})
}

// StartWith starts an n-member cluster as opts say and waits until it
// answers; it skips the test when the etcd binary is not installed. The
// client of Client reaches it only when it runs in the test's namespace.
func StartWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		needs.Skip(t, "etcd binary not installed (Debian: apt-get install etcd-server): cannot run a real etcd cluster")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	dir := t.TempDir()
	client, peer := make([]string, n), make([]string, n)
	var initial []string
	for i := range n {
		// Ports free on the test's loopback; a fresh namespace has
		// every port free.
		client[i] = "http://" + net.JoinHostPort(opts.Host, freePort(t))
		peer[i] = "http://" + net.JoinHostPort(opts.Host, freePort(t))
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peer[i]))
	}
	c := &Cluster{Endpoints: client, t: t, bin: bin, opts: opts}
	for i := range n {
		m := &member{
			args: append([]string{
				"--name", fmt.Sprintf("m%d", i),
				"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
				"--listen-client-urls", client[i], "--advertise-client-urls", client[i],
				"--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-state", "new", "--initial-cluster-token", "matchbox-test",
				"--log-level", "error"},
				opts.Args...),
			log: filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		c.members = append(c.members, m)
		c.StartMember(i)
		t.Cleanup(func() { c.stop(m, syscall.SIGTERM) })
	}
	if opts.Netns != "" {
		c.waitReady(dir)
		return c
	}
	cli := c.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/etcdtest/ready", "1")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster did not answer within 30s: %v (logs in %s)", err, dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// waitReady waits until etcdctl, run in the cluster's namespace, finds
// every member healthy.
func (c *Cluster) waitReady(dir string) {
	c.t.Helper()
	ctl, err := exec.LookPath("etcdctl")
	if err != nil {
		needs.Skip(c.t, "etcdctl not installed (Debian: apt-get install etcd-client): cannot check an etcd cluster in a namespace")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cmd := exec.Command("ip", "netns", "exec", c.opts.Netns, ctl, "--endpoints", strings.Join(c.Endpoints, ","), "--command-timeout", "2s", "put", "/etcdtest/ready", "1")
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd cluster in namespace %s did not answer within 30s: %v: %s (logs in %s)", c.opts.Netns, err, out, dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StopMember stops member i with SIGTERM and waits until it has exited.
func (c *Cluster) StopMember(i int) {
	c.t.Helper()
	c.stop(c.members[i], syscall.SIGTERM)
}

// StartMember starts member i again (with its data) after StopMember.
func (c *Cluster) StartMember(i int) {
	c.t.Helper()
	m := c.members[i]
	if m.cmd != nil {
		c.t.Fatalf("etcd member %d is running", i)
	}
	args := append([]string{c.bin}, m.args...)
	if c.opts.Netns != "" {
		args = append([]string{"ip", "netns", "exec", c.opts.Netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start etcd member %d: %v", i, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.done) }()
}

func (c *Cluster) stop(m *member, sig syscall.Signal) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
