package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestartWithEmptyOrMissingDataDir imports a catalog, then restarts on
// the same database with the data directory emptied (an unmounted mount
// point: the same path, so the same import source) and with a missing
// data directory: both are refused with a clear error and nothing is
// deleted.
func TestRestartWithEmptyOrMissingDataDir(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(filepath.Join(dir, "groups"), 0o755)
	os.WriteFile(filepath.Join(dir, "profiles", "p.yaml"), []byte("id: p\nboot:\n  kernel: /k\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "groups", "a.yaml"), []byte("id: a\nprofile: p\n"), 0o644)
	db := filepath.Join(t.TempDir(), "matchbox.db")
	key := filepath.Join(t.TempDir(), "agent.key")
	args := []string{"--db", db, "--agent-key-file", key, "--assets-dir", "-"}
	first := startServer(t, append([]string{"--data-dir", dir}, args...)...)
	first.Cmd.Process.Signal(os.Interrupt)
	first.Cmd.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cases := []struct {
		name, dataDir, want string
	}{
		{"empty", dir, "would delete all 2 objects imported from files"},
		{"missing", filepath.Join(t.TempDir(), "not-mounted"), "does not exist"},
	}
	moved := dir + ".unmounted"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o755)
	for _, c := range cases {
		out, err := exec.CommandContext(ctx, bin, append([]string{"serve", "--http-addr", "127.0.0.1:0", "--data-dir", c.dataDir}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Fatalf("%s data directory: err %v, want %q in:\n%s", c.name, err, c.want, out)
		}
	}
	os.Remove(dir)
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cases[1].dataDir); err == nil {
		t.Error("a missing data directory was created")
	}
	again := startServer(t, append([]string{"--data-dir", dir}, args...)...)
	if logs := again.Logs(); !strings.Contains(logs, "unchanged since its last import and catalog unchanged since: import skipped") {
		t.Fatalf("catalog changed by the refused restarts:\n%s", logs)
	}
}

func TestPruneGuard(t *testing.T) {
	cases := []struct {
		guard             pruneGuard
		deleted, imported int
		ok                bool
	}{
		{pruneGuard{limit: 0.5}, 0, 0, true},
		{pruneGuard{limit: 0.5}, 1, 4, true},
		{pruneGuard{limit: 0.5}, 2, 4, true},
		{pruneGuard{limit: 0.5}, 3, 4, false},
		{pruneGuard{limit: 1}, 4, 4, false},
		{pruneGuard{limit: 0.5, allow: true}, 4, 4, true},
	}
	for _, c := range cases {
		if err := c.guard.check(c.deleted, c.imported); (err == nil) != c.ok {
			t.Errorf("%+v check(%d, %d) = %v, want ok %v", c.guard, c.deleted, c.imported, err, c.ok)
		}
	}
}
