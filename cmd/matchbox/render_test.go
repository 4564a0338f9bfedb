package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dbFiles reads the SQLite database file and its WAL.
func dbFiles(t *testing.T, db string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(db + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		out[db+suffix] = b
	}
	return out
}

// TestRenderChangesNothing: `matchbox render` and GET /api/v1/render show
// what fcos-install's machine gets at each stage, with the group and
// profile; they and boot requests from outside --boot-networks leave the
// database file byte-identical (no machine, no event). A boot request from
// the boot network does record, as the control.
func TestRenderChangesNothing(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.CopyFS(data, os.DirFS("../../examples/fcos-install")); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "matchbox.db")
	const mac = "52:54:00:d4:1e:07"
	s := startServer(t, "--data-dir", data, "--db", db, "--assets-dir", "-", "--agent-key-file", filepath.Join(dir, "agent.key"),
		"--boot-networks", "10.99.0.0/24,fd99::/64")
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}
	time.Sleep(300 * time.Millisecond) // the import's writes are done
	before := dbFiles(t, db)

	code, stdout, stderr := runCLI(t, env, "render", "--mac", mac)
	if code != 0 || !strings.Contains(stderr, "group install, profile fcos-install") || !strings.Contains(stdout, "coreos.inst.install_dev=/dev/sda") {
		t.Fatalf("render ipxe: %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, env, "render", "ignition", "--mac", mac, "--label", "os=installed", "-o", "json")
	var r struct{ Group, Profile, Body string }
	if err := json.Unmarshal([]byte(stdout), &r); code != 0 || err != nil {
		t.Fatalf("render ignition: %d %v\n%s\n%s", code, err, stdout, stderr)
	}
	if r.Group != "installed" || r.Profile != "fcos-installed" || !strings.Contains(r.Body, "/provisioned?machine=52-54-00-d4-1e-07\\u0026token=") {
		t.Fatalf("render ignition os=installed: %+v", r)
	}
	if code, _, stderr = runCLI(t, env, "render", "--label", "os=installed"); code == 0 || !strings.Contains(stderr, "--mac or --uuid") {
		t.Fatalf("render without a machine: %d %s", code, stderr)
	}
	if code, body := httpGet(t, s.URL+"/api/v1/render?endpoint=grub&mac="+mac); code != 200 || !strings.Contains(body, `"profile": "fcos-install"`) {
		t.Fatalf("GET /api/v1/render: %d %s", code, body)
	}
	if code, body := httpGet(t, s.URL+"/api/v1/render?endpoint=disk&mac="+mac); code != 400 {
		t.Fatalf("GET /api/v1/render?endpoint=disk: %d %s", code, body)
	}
	// An operator's curl from outside the boot networks is only a look.
	for _, p := range []string{"/ipxe?mac=" + mac, "/ignition?mac=" + mac, "/ignition?mac=" + mac + "&os=installed"} {
		if code, body := httpGet(t, s.URL+p); code != 200 {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the event recorder's batches are written
	after := dbFiles(t, db)
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("%s changed (%d → %d bytes)", name, len(b), len(after[name]))
		}
	}
	if code, body := httpGet(t, s.URL+"/api/v1/machines"); code != 200 || strings.Contains(body, "52-54-00-d4-1e-07") {
		t.Errorf("machines: %d %s", code, body)
	}
}
