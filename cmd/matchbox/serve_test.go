package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"matchbox/internal/servetest"
)

// buildOnce builds the matchbox binary once per test run.
var buildOnce = sync.OnceValues(servetest.Build)

// server is a running `matchbox serve`; URL is its boot listener's.
type server struct {
	*servetest.Process
	URL string
}

// startServer runs the real binary with args plus --http-addr 127.0.0.1:0
// and waits until it listens.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	p := servetest.Start(t, bin, append([]string{"serve", "--http-addr", "127.0.0.1:0"}, args...), nil, servetest.HTTPListening)
	return &server{Process: p, URL: "http://" + p.Addrs[0]}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeShippedDefaults runs the README's run command on the repository's
// own data (profiles/, groups/) with a fresh SQLite file.
func TestServeShippedDefaults(t *testing.T) {
	db := filepath.Join(t.TempDir(), "matchbox.db")
	s := startServer(t, "--data-dir", "../..", "--db", db, "--agent-key-file", filepath.Join(t.TempDir(), "agent.key"), "--assets-dir", "-")
	code, body := httpGet(t, s.URL+"/boot.ipxe")
	if code != 200 || !strings.HasPrefix(body, "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}") {
		t.Fatalf("/boot.ipxe: %d %q", code, body)
	}
	code, body = httpGet(t, s.URL+"/ipxe?mac=52-54-00-12-34-56&uuid=&arch=x86_64")
	if code != 200 || !strings.Contains(body, "kernel /assets/discovery/vmlinuz") || !strings.Contains(body, "initrd /assets/discovery/initramfs.cpio.gz") {
		t.Fatalf("/ipxe: %d %q", code, body)
	}
	// The web console is served on the API's router; without a token file
	// a loopback client is admin.
	code, body = httpGet(t, s.URL+"/ui/")
	if code != 200 || !strings.Contains(body, "<h1>Fleet</h1>") || !strings.Contains(body, "role: admin") {
		t.Fatalf("/ui/: %d\n%s", code, body)
	}
	if code, body = httpGet(t, s.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body = httpGet(t, s.URL+"/metrics")
	if code != 200 || !strings.Contains(body, `matchbox_http_requests_total{code="200",endpoint="ipxe"} 1`) || !strings.Contains(body, "matchbox_groups_loaded 1") ||
		!strings.Contains(body, "matchbox_events_dropped_total 0") || !strings.Contains(body, "matchbox_events_failed_total 0") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
}

func TestServeRefusesBadDataDir(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(filepath.Join(dir, "groups"), 0o755)
	os.WriteFile(filepath.Join(dir, "profiles", "p.yaml"), []byte("id: p\nboot:\n  kernel: /k\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "groups", "a.yaml"), []byte("id: a\nprofile: p\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "groups", "b.json"), []byte("{\"id\": \"b\",\n \"profile\": \"p\",\n \"selector\": {\"mac\": 7}}"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil {
		t.Fatal("serve started with a bad data directory")
	}
	if !strings.Contains(string(out), "groups/b.json:3: field selector: cannot use a JSON number as string") {
		t.Fatalf("error does not locate the problem:\n%s", out)
	}
	db := filepath.Join(dir, "matchbox.db")
	if got := storedObjects(t, db); len(got) != 0 {
		t.Fatalf("a refused data directory left %v in %s", got, db)
	}
	// Fix the type: now the two defaults collide, and nothing is stored.
	os.WriteFile(filepath.Join(dir, "groups", "b.json"), []byte(`{"id": "b", "profile": "p"}`), 0o644)
	out, err = exec.CommandContext(ctx, bin, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `groups "a" and "b" are both default groups`) {
		t.Fatalf("duplicate defaults: %v\n%s", err, out)
	}
	if got := storedObjects(t, db); len(got) != 0 {
		t.Fatalf("a refused data directory left %v in %s", got, db)
	}
}

// storedObjects returns "table: id" for every profile, group, template
// and audit record in the SQLite database db (none when db does not
// exist), read with the sqlite driver directly, not through the store.
func storedObjects(t *testing.T, db string) []string {
	t.Helper()
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	defer conn.Close()
	var got []string
	for _, q := range []string{"SELECT 'profiles: ' || id FROM profiles", "SELECT 'groups: ' || id FROM groups",
		"SELECT 'templates: ' || name FROM templates", "SELECT 'audit: ' || id FROM audit"} {
		rows, err := conn.Query(q)
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // the schema was never created: nothing stored
			}
			t.Fatalf("%s: %s: %v", db, q, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %s: %v", db, q, err)
		}
		rows.Close()
	}
	return got
}

func TestEnvironmentSetsFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MATCHBOX_DATA_DIR", dir)
	t.Setenv("MATCHBOX_LOG_LEVEL", "debug")
	s := startServer(t)
	if !strings.Contains(s.Logs(), "data_dir="+dir) {
		t.Fatalf("MATCHBOX_DATA_DIR ignored:\n%s", s.Logs())
	}
	if code, _ := httpGet(t, s.URL+"/ipxe?mac=52:54:00:00:00:01"); code != 404 {
		t.Fatalf("empty data dir must match nothing, got %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "matchbox.db")); err != nil {
		t.Fatalf("database not in the data dir: %v", err)
	}
}

// TestServeStoreFlag: --store sqlite:// serves from that file; an etcd
// store that does not answer is refused naming it; bad store flags are
// refused naming the flag.
func TestServeStoreFlag(t *testing.T) {
	db := filepath.Join(t.TempDir(), "via-store.db")
	s := startServer(t, "--data-dir", t.TempDir(), "--store", "sqlite://"+db, "--assets-dir", "-")
	if code, _ := httpGet(t, s.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("--store sqlite:// file not used: %v", err)
	}
	if code, body := httpGet(t, s.URL+"/api/v1/instances"); code != 200 || strings.Count(body, `"instance"`) != 1 {
		t.Errorf("GET /api/v1/instances on SQLite: %d, want this instance alone:\n%s", code, body)
	}

	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		args []string
		want string
	}{
		{"etcd not answering", []string{"--store", "etcd://127.0.0.1:1,127.0.0.1:2/matchbox"}, "--store etcd://127.0.0.1:1,127.0.0.1:2/matchbox: "},
		{"etcd without prefix", []string{"--store", "etcd://127.0.0.1:2379"}, "without a key prefix"},
		{"--store with --db", []string{"--store", "sqlite://" + db, "--db", db}, "--store and --db both given"},
		{"etcd flag with sqlite", []string{"--etcd-username", "u"}, "--etcd-username given with an SQLite store"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0"}, tc.args...)
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err = %v, want output containing %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// TestServeBootRepeatInterval: with --boot-repeat-interval 0 every /ipxe
// request of a known machine reaches its timeline at once (identical
// events of one write batch may share a row, its count); by default the
// repeats after the machine's first request as a known machine are
// counted in memory and written later, so the timeline holds 2 of 4
// requests right after them (the discovering one, the first known one).
func TestServeBootRepeatInterval(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"every request written", []string{"--boot-repeat-interval", "0"}, 4},
		{"repeats counted in memory", nil, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, append([]string{"--data-dir", "../..", "--db", filepath.Join(t.TempDir(), "matchbox.db"),
				"--agent-key-file", filepath.Join(t.TempDir(), "agent.key"), "--assets-dir", "-"}, tt.args...)...)
			const mac = "52-54-00-12-34-57"
			for range 4 {
				if code, body := httpGet(t, s.URL+"/ipxe?mac="+mac); code != 200 {
					t.Fatalf("/ipxe: %d %q", code, body)
				}
			}
			// requests sums the http.ipxe rows of the timeline, a row
			// with a count standing for that many requests.
			requests := func() int {
				code, body := httpGet(t, s.URL+"/api/v1/machines/"+mac+"/events?type=http.ipxe")
				if code != 200 {
					t.Fatalf("events: %d %s", code, body)
				}
				var page struct {
					Events []struct {
						Detail struct {
							Count int `json:"count"`
						} `json:"detail"`
					} `json:"events"`
				}
				if err := json.Unmarshal([]byte(body), &page); err != nil {
					t.Fatalf("events: %v: %s", err, body)
				}
				n := 0
				for _, ev := range page.Events {
					n += max(ev.Detail.Count, 1)
				}
				return n
			}
			deadline := time.Now().Add(10 * time.Second)
			n := requests()
			for n < tt.want && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				n = requests()
			}
			time.Sleep(500 * time.Millisecond) // room for rows that should not come
			if n = requests(); n != tt.want {
				t.Fatalf("the timeline holds %d of 4 /ipxe requests, want %d", n, tt.want)
			}
		})
	}
}
