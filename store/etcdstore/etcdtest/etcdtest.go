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
	members   []*exec.Cmd
}

// Start starts an n-member cluster and waits until it answers; it skips
// the test when the etcd binary is not installed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		needs.Skip(t, "etcd binary not installed (Debian: apt-get install etcd-server): cannot run a real etcd cluster")
	}
	dir := t.TempDir()
	client, peer := make([]string, n), make([]string, n)
	var initial []string
	for i := range n {
		client[i] = "http://" + freeAddr(t)
		peer[i] = "http://" + freeAddr(t)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peer[i]))
	}
	c := &Cluster{Endpoints: client}
	for i := range n {
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("m%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client[i], "--advertise-client-urls", client[i],
			"--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "matchbox-test",
			"--log-level", "error")
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start etcd member %d: %v", i, err)
		}
		c.members = append(c.members, cmd)
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			logf.Close()
		})
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

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
