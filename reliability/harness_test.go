package reliability

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"matchbox/internal/needs"
	"matchbox/internal/netnstest"
)

// long selects the long form of every test (make reliability).
var long = flag.Bool("long", false, "run the long form of the reliability tests (at least 50 kills, a storm of 1,000)")

// stormSize overrides the number of machines of TestBootStorm.
var stormSize = flag.Int("storm", 0, "machines in TestBootStorm (default 150, 1,000 with -long)")

// bins are the binaries built once for every test.
var bins struct {
	matchbox, storm string
	err             error
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "matchbox-reliability-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		bins.matchbox = filepath.Join(dir, "matchbox")
		bins.storm = filepath.Join(dir, "storm")
		for bin, pkg := range map[string]string{bins.matchbox: "matchbox/cmd/matchbox", bins.storm: "matchbox/bench/storm/cmd/storm"} {
			out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
			if err != nil {
				bins.err = fmt.Errorf("go build %s: %v: %s", pkg, err, out)
				break
			}
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBinaries skips in -short mode and fails when the build failed.
func needBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the matchbox binary: not in -short mode")
	}
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// needRoot skips unless the test can create namespaces and run the
// commands named.
func needRoot(t *testing.T, cmds ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root (network namespaces, mounts)")
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(c); err != nil {
			needs.Skipf(t, "needs the %s command (Debian packages: .ci/apt-packages)", c)
		}
	}
}

// kills returns short in the short form, longN in the long one.
func kills(short, longN int) int {
	if *long {
		return longN
	}
	return short
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is a server namespace holding a bridge br0 (10.77.0.1/16) and a
// client namespace with n interfaces c0..c(n-1), each the end of a veth
// pair whose other end is on the bridge.
type lab struct {
	srv, cli string
	clients  []string
}

const (
	serverIP  = "10.77.0.1"
	dhcpRange = "10.77.1.0-10.77.255.250"
)

func newLab(t *testing.T, n int) *lab {
	t.Helper()
	l := &lab{srv: netnstest.New(t, "rels"), cli: netnstest.New(t, "relc")}
	br := netnstest.NewBridge(t, l.srv, "br0", netnstest.BridgeMAC, serverIP+"/16")
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		br.Port(t, l.cli, name)
		l.clients = append(l.clients, name)
	}
	return l
}

// server is one matchbox serve process, restarted after each kill.
type server struct {
	t       *testing.T
	ns      string // network namespace, "" for the test's own
	dir     string
	db      string
	base    string // http://addr:port
	args    []string
	client  *http.Client
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	starts  int
}

// newServer prepares a matchbox serve over dir (data directory and
// database) listening on httpAddr, with extra flags; the test reaches it on
// loopback when httpAddr is 0.0.0.0.
func newServer(t *testing.T, ns, dir, httpAddr string, extra ...string) *server {
	base := "http://" + httpAddr
	if host, port, _ := net.SplitHostPort(httpAddr); host == "0.0.0.0" {
		base = "http://127.0.0.1:" + port // the API answers loopback clients
	}
	s := &server{t: t, ns: ns, dir: dir, db: filepath.Join(dir, "matchbox.db"), base: base,
		logPath: filepath.Join(dir, "matchbox.log")}
	s.args = append([]string{"serve", "--data-dir", dir, "--db", s.db, "--http-addr", httpAddr,
		"--agent-key-file", filepath.Join(dir, "agent.key"), "--log-level", "warn", "--shutdown-timeout", "1s"}, extra...)
	tr := &http.Transport{DisableKeepAlives: true}
	if ns != "" {
		tr.DialContext = netnstest.DialContext(ns)
	}
	s.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(s.stop)
	return s
}

// start runs the server and waits until /healthz answers.
func (s *server) start() {
	t := s.t
	t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.starts++
	fmt.Fprintf(logf, "=== start %d\n", s.starts)
	if s.ns != "" {
		s.cmd = exec.Command("ip", append([]string{"netns", "exec", s.ns, bins.matchbox}, s.args...)...)
	} else {
		s.cmd = exec.Command(bins.matchbox, s.args...)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		err := cmd.Wait()
		if f, ferr := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND, 0); ferr == nil {
			fmt.Fprintf(f, "=== exit: %v\n", err)
			f.Close()
		}
		close(done)
	}(s.cmd, s.exited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("matchbox exited at start %d: %s", s.starts, s.tail())
		default:
		}
		resp, err := s.client.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("matchbox did not answer /healthz within 30s: %s", s.tail())
}

// kill9 kills the server with SIGKILL and waits for it to exit. Under ip
// netns exec the process is matchbox itself (ip execs it).
func (s *server) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	if s.cmd != nil {
		s.kill9()
	}
}

// tail returns the end of the server's log.
func (s *server) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// sqlite runs a query on the server's database with the sqlite3 shell
// (the server is down) and returns its rows, fields separated by |.
func sqlite(t *testing.T, db, query string) []string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-batch", db, query).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v: %s", db, query, err, out)
	}
	return strings.Fields(string(bytes.TrimSpace(out)))
}

// integrityOK checks SQLite's integrity_check of db.
func integrityOK(t *testing.T, db string) {
	t.Helper()
	if got := sqlite(t, db, "PRAGMA integrity_check;"); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("integrity_check of %s: %v", db, got)
	}
}

// randomDelay is a random duration in [lo, hi).
func randomDelay(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)))
}
