// Package servetest runs the real matchbox binary in tests: it builds the
// binary, starts a process of it, waits until the process says it listens,
// keeps its log and stops it when the test ends. pki.go makes the
// certificates a TLS test needs.
package servetest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles matchbox/cmd/matchbox into a new temporary directory and
// returns the binary's path. A test binary builds it once, with
// sync.OnceValues(servetest.Build).
func Build() (string, error) {
	dir, err := os.MkdirTemp("", "matchbox-bin-")
	if err != nil {
		return "", fmt.Errorf("build matchbox: %w", err)
	}
	bin := filepath.Join(dir, "matchbox")
	out, err := exec.Command("go", "build", "-o", bin, "matchbox/cmd/matchbox").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build matchbox/cmd/matchbox: %w\n%s", err, out)
	}
	return bin, nil
}

// The log lines Start can wait for; the first submatch is the address.
var (
	// HTTPListening is the boot (and, without --api-addr, API) listener's line.
	HTTPListening = regexp.MustCompile(`msg="matchbox serving" http=(\S+)`)
	// APIListening is the line of the API's own listener (--api-addr).
	APIListening = regexp.MustCompile(`msg="matchbox API serving" addr=(\S+)`)
)

// Process is a running matchbox process started by Start.
type Process struct {
	// Cmd is the process (Cmd.Process.Pid, signals).
	Cmd *exec.Cmd
	// Addrs holds, for each pattern Start waited for, its first submatch
	// (the address it listens on), in the order given.
	Addrs []string

	mu   sync.Mutex
	logs strings.Builder
}

// Logs returns what the process wrote to stderr so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Start runs bin with args and env (nil: the test's own environment),
// waits up to a minute until each pattern of wait has matched a line of
// its stderr, and returns it. t fails if the process exits or is silent
// before that. When t ends the process gets SIGTERM; if it has not exited
// 20 seconds later it is killed and t fails.
func Start(t testing.TB, bin string, args, env []string, wait ...*regexp.Regexp) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if env == nil {
		cmd.Env = os.Environ()
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &Process{Cmd: cmd, Addrs: make([]string, len(wait))}
	type match struct {
		i    int
		addr string
	}
	matches := make(chan match, len(wait))
	go func() {
		seen := make([]bool, len(wait))
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			for i, re := range wait {
				if m := re.FindStringSubmatch(line); m != nil && !seen[i] {
					seen[i] = true
					matches <- match{i, m[1]}
				}
			}
		}
		close(matches)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop on SIGTERM; logs:\n%s", strings.Join(args, " "), p.Logs())
		}
	})
	deadline := time.After(60 * time.Second)
	for range wait {
		select {
		case m, ok := <-matches:
			if !ok {
				t.Fatalf("%s exited before listening; logs:\n%s", strings.Join(args, " "), p.Logs())
			}
			p.Addrs[m.i] = m.addr
		case <-deadline:
			t.Fatalf("%s did not start in a minute; logs:\n%s", strings.Join(args, " "), p.Logs())
		}
	}
	return p
}
