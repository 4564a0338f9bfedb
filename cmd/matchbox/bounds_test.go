package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServeSlowClientsOnEveryListener opens 3,000 idle or slowloris
// connections against the boot listener and 500 against the API listener,
// each capped at 256 connections: /healthz and the API still answer within
// a few seconds, and the server then serves as before.
func TestServeSlowClientsOnEveryListener(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 3,500 connections: not with -short")
	}
	dir := t.TempDir()
	s := startServer(t, "--data-dir", "../..", "--db", filepath.Join(dir, "m.db"), "--agent-key-file", filepath.Join(dir, "agent.key"),
		"--assets-dir", "-", "--http-max-conns", "256", "--api-addr", "127.0.0.1:0", "--api-max-conns", "256")
	var apiAddr string
	for deadline := time.Now().Add(10 * time.Second); apiAddr == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := regexp.MustCompile(`msg="matchbox API serving" addr=(\S+)`).FindStringSubmatch(s.Logs()); m != nil {
			apiAddr = m[1]
		}
	}
	if apiAddr == "" {
		t.Fatalf("API listener not logged:\n%s", s.Logs())
	}
	httpAddr := strings.TrimPrefix(s.URL, "http://")
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	open := func(addr string, n int) {
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d to %s: %v", i, addr, err)
			}
			conns = append(conns, c)
			if i%2 == 0 { // slowloris: a request head never finished
				fmt.Fprintf(c, "GET /boot.ipxe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			}
		}
	}
	open(httpAddr, 3000)
	open(apiAddr, 500)

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, url := range []string{s.URL + "/healthz", "http://" + apiAddr + "/api/v1/profiles", s.URL + "/boot.ipxe"} {
		start := time.Now()
		resp, err := getRetrying(client, url, 10*time.Second) // a refused connection is tried again, as a probe would
		if err != nil {
			t.Fatalf("GET %s behind %d slow connections: %v", url, len(conns), err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		if d := time.Since(start); d > 12*time.Second {
			t.Errorf("GET %s took %v behind %d slow connections", url, d, len(conns))
		}
		t.Logf("GET %s behind %d slow connections: %v", url, len(conns), time.Since(start).Round(time.Millisecond))
	}
	if fds := openFiles(t, s.Cmd.Process.Pid); fds > 2*256+100 {
		t.Errorf("server holds %d files with two listeners capped at 256 connections", fds)
	}
	if strings.Contains(s.Logs(), "too many open files") {
		t.Errorf("accept ran out of files:\n%s", s.Logs())
	}
}

// getRetrying is a health probe's GET: a refused connection is tried again
// until within has passed.
func getRetrying(client *http.Client, url string, within time.Duration) (*http.Response, error) {
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil || time.Now().After(deadline) {
			return resp, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// openFiles counts a process's open files.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	return len(ents)
}

// TestServeHostileAssetNames asks /assets/ for names that leave the
// directory, encoded or through a symlink, and a 10 KB junk name: each gets
// the answer it must, the junk name costs a short log line, and the server
// still serves a real asset afterwards.
func TestServeHostileAssetNames(t *testing.T) {
	dir := t.TempDir()
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(assets, "kernel"), []byte("KERNEL"), 0o644)
	os.Symlink(secret, filepath.Join(assets, "escape"))
	os.Symlink("../secret.txt", filepath.Join(assets, "escape-rel"))
	s := startServer(t, "--data-dir", "../..", "--db", filepath.Join(dir, "m.db"), "--agent-key-file", filepath.Join(dir, "agent.key"), "--assets-dir", assets)
	junk := strings.Repeat("j", 10_000)
	tests := []struct {
		name, path string
		want       int
	}{
		{"dot-dot", "/assets/../secret.txt", 400},
		{"encoded dot-dot", "/assets/%2e%2e/secret.txt", 400}, // decoded to .. inside /assets/: refused
		{"encoded slash dot-dot", "/assets/..%2fsecret.txt", 400},
		{"double-encoded dot-dot", "/assets/%252e%252e/secret.txt", 404},   // decoded once: a name %2e%2e, not ..
		{"double-encoded slash dot-dot", "/assets/..%252fsecret.txt", 404}, // a name "..%2fsecret.txt" in the folder
		{"mixed-encoding dot-dot", "/assets/.%2e/secret.txt", 400},
		{"backslash dot-dot", "/assets/..%5csecret.txt", 400},
		{"absolute symlink out", "/assets/escape", 403},
		{"relative symlink out", "/assets/escape-rel", 403},
		{"NUL byte", "/assets/kernel%00.txt", 403},
		{"junk name", "/assets/" + junk, 403}, // longer than a file name can be
		{"real asset", "/assets/kernel", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", s.URL+tt.path, nil)
			req.URL.Opaque = tt.path // sent as written, not re-encoded
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := make([]byte, 64)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %.60s: %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
			if strings.Contains(string(body[:n]), "outside") {
				t.Errorf("GET %.60s served the file outside the directory", tt.path)
			}
		})
	}
	// The server's log is read as it is written: wait for the junk name's line.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(s.Logs(), "jjjjjjjj") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.Logs(), "jjjjjjjj") {
		t.Errorf("the refused junk name is not logged:\n%.2000s", s.Logs())
	}
	for _, line := range strings.Split(s.Logs(), "\n") {
		if len(line) > 1024 {
			t.Errorf("a %d-byte log line: %.200s", len(line), line)
		}
	}
	if code, body := httpGet(t, s.URL+"/assets/kernel"); code != 200 || body != "KERNEL" {
		t.Errorf("after hostile names: %d %q", code, body)
	}
}
