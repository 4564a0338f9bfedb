package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/hardware"
)

const fixture = "../../hardware/testdata/supermicro-1u"

// fakeServer records the requests it gets and answers with codes in turn,
// repeating the last one.
type fakeServer struct {
	mu       sync.Mutex
	codes    []int
	requests []*http.Request
	bodies   [][]byte
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	code := f.codes[min(len(f.requests), len(f.codes)-1)]
	f.requests = append(f.requests, r)
	f.bodies = append(f.bodies, body)
	w.WriteHeader(code)
	if code >= 400 {
		io.WriteString(w, "no\n")
	}
}

// testAgent returns an agent with fast retries whose reboot calls are
// recorded instead of made.
func testAgent(pid int) (*agent, *bytes.Buffer, *bytes.Buffer, *[]string) {
	var stdout, stderr bytes.Buffer
	var actions []string
	return &agent{
		stdout:   &stdout,
		stderr:   &stderr,
		client:   &http.Client{Timeout: 5 * time.Second},
		attempts: 4,
		backoff:  time.Millisecond,
		reboot:   func(action string) error { actions = append(actions, action); return nil },
		pid:      pid,
	}, &stdout, &stderr, &actions
}

func TestPrint(t *testing.T) {
	a, stdout, stderr, actions := testAgent(1234)
	if code := a.run(context.Background(), []string{"--print", "--root", fixture}); code != exitOK {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	var inv hardware.Inventory
	if err := json.Unmarshal(stdout.Bytes(), &inv); err != nil {
		t.Fatalf("stdout is not an inventory: %v\n%s", err, stdout)
	}
	if inv.System.Serial != "S349872X9A12345" || inv.CPU.Threads != 12 || len(inv.Disks) != 2 {
		t.Errorf("printed inventory = %+v", inv)
	}
	if len(*actions) != 0 {
		t.Errorf("after actions %v, want none", *actions)
	}
}

func TestPost(t *testing.T) {
	tests := []struct {
		name     string
		codes    []int
		wantExit int
		wantReqs int
		wantErr  string
	}{
		{"first try", []int{http.StatusNoContent}, exitOK, 1, ""},
		{"retries 503", []int{503, 503, 200}, exitOK, 3, ""},
		{"retries 429 and 502", []int{429, 502, 201}, exitOK, 3, ""},
		{"refused 401", []int{401}, exitRefused, 1, "401 Unauthorized: no"},
		{"refused 404 after a 503", []int{503, 404}, exitRefused, 2, "404 Not Found"},
		{"gives up", []int{503}, exitReport, 4, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeServer{codes: tt.codes}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			a, _, stderr, _ := testAgent(1234)
			code := a.run(context.Background(), []string{"--root", fixture, "--url", srv.URL + "/",
				"--machine-id", "52:54:00:aa:bb:cc", "--token", "v1.abc.def"})
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.wantExit, stderr)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr does not mention %q: %s", tt.wantErr, stderr)
			}
			if len(fake.requests) != tt.wantReqs {
				t.Fatalf("%d requests, want %d", len(fake.requests), tt.wantReqs)
			}
			for i, r := range fake.requests {
				if r.Method != http.MethodPost || r.URL.EscapedPath() != "/api/v1/machines/52:54:00:aa:bb:cc/inventory" {
					t.Errorf("request %d: %s %s", i, r.Method, r.URL.EscapedPath())
				}
				if got := r.Header.Get("Authorization"); got != "Bearer v1.abc.def" {
					t.Errorf("request %d: Authorization %q", i, got)
				}
				if got := r.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("request %d: Content-Type %q", i, got)
				}
				var inv hardware.Inventory
				if err := json.Unmarshal(fake.bodies[i], &inv); err != nil {
					t.Fatalf("request %d body: %v", i, err)
				}
				if inv.System.Product != "SYS-5019C-MR" || len(inv.NICs) != 2 {
					t.Errorf("request %d inventory = %+v", i, inv)
				}
			}
		})
	}
}

func TestPostUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	a, _, stderr, _ := testAgent(1234)
	a.attempts = 2
	code := a.run(context.Background(), []string{"--root", fixture, "--url", url, "--machine-id", "m1", "--token", "t"})
	if code != exitReport || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("exit %d, stderr: %s", code, stderr)
	}
}

// cmdlineRoot returns a root holding the fixture's files and the given
// kernel command line.
func cmdlineRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(fixture)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc", "cmdline"), []byte(cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestKernelCommandLine(t *testing.T) {
	fake := &fakeServer{codes: []int{204}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	root := cmdlineRoot(t, "BOOT_IMAGE=/vmlinuz console=ttyS0 quiet matchbox.url="+srv.URL+
		" matchbox.id=serial-1 matchbox.token=v1.tok.sig matchbox.after=reboot")

	a, _, stderr, actions := testAgent(1234)
	if code := a.run(context.Background(), []string{"--root", root}); code != exitOK {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	if len(fake.requests) != 1 || fake.requests[0].URL.Path != "/api/v1/machines/serial-1/inventory" ||
		fake.requests[0].Header.Get("Authorization") != "Bearer v1.tok.sig" {
		t.Fatalf("requests: %+v", fake.requests)
	}
	if !reflect.DeepEqual(*actions, []string{"reboot"}) {
		t.Errorf("after actions %v, want [reboot]", *actions)
	}

	// Flags win over kernel arguments.
	a, _, stderr, actions = testAgent(1234)
	if code := a.run(context.Background(), []string{"--root", root, "--machine-id", "flag-id", "--after", "none"}); code != exitOK {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	if fake.requests[1].URL.Path != "/api/v1/machines/flag-id/inventory" || len(*actions) != 0 {
		t.Errorf("flags did not override: path %s, actions %v", fake.requests[1].URL.Path, *actions)
	}
}

func TestAfterAction(t *testing.T) {
	tests := []struct {
		name    string
		pid     int
		args    []string
		cmdline string
		want    []string
	}{
		{"default none", 1234, []string{"--print"}, "", nil},
		{"pid 1 defaults to poweroff", 1, []string{"--print"}, "", []string{"poweroff"}},
		{"pid 1 told none", 1, []string{"--print", "--after", "none"}, "", nil},
		{"explicit flag", 1234, []string{"--print", "--after", "poweroff"}, "", []string{"poweroff"}},
		{"kernel argument", 1234, nil, "matchbox.print=1 matchbox.after=poweroff", []string{"poweroff"}},
		{"runs after a failed report too", 1234, []string{"--after", "reboot", "--url", "http://127.0.0.1:1",
			"--machine-id", "m", "--token", "t"}, "", []string{"reboot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, _, actions := testAgent(tt.pid)
			a.attempts = 1
			root := cmdlineRoot(t, tt.cmdline)
			a.run(context.Background(), append([]string{"--root", root}, tt.args...))
			if !reflect.DeepEqual(*actions, tt.want) {
				t.Errorf("after actions %v, want %v", *actions, tt.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing to do", nil, "nothing to do"},
		{"bad after", []string{"--print", "--after", "halt"}, `--after "halt"`},
		{"url without id", []string{"--url", "http://x", "--token", "t"}, "needs --machine-id"},
		{"url without token", []string{"--url", "http://x", "--machine-id", "m"}, "needs --token"},
		{"bad url", []string{"--url", "x:/y", "--machine-id", "m", "--token", "t"}, "want an http or https URL"},
		{"extra argument", []string{"--print", "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, stderr, _ := testAgent(1234)
			root := cmdlineRoot(t, "")
			if code := a.run(context.Background(), append([]string{"--root", root}, tt.args...)); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.want)
			}
		})
	}
	a, _, _, _ := testAgent(1234)
	if code := a.run(context.Background(), []string{"--print", "--root", "/nonexistent-root"}); code != exitCollect {
		t.Errorf("unreadable root: exit %d, want %d", code, exitCollect)
	}
}

func TestParseCmdline(t *testing.T) {
	got := parseCmdline(`BOOT_IMAGE=/vmlinuz ro quiet matchbox.url=http://10.0.0.1:8080 matchbox.id="a b" x=1 x=2` + "\n")
	want := map[string]string{"BOOT_IMAGE": "/vmlinuz", "ro": "", "quiet": "", "matchbox.url": "http://10.0.0.1:8080",
		"matchbox.id": "a b", "x": "2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseCmdline = %v, want %v", got, want)
	}
}
