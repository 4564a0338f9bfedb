package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/matchbox"
	"matchbox/store"
)

// TestImportSkippedOnlyWhenUnchanged starts (imports) again and again on
// one database: the import is skipped only when neither the data
// directory's content nor the catalog changed since the last import; a
// changed, added or removed file, or a catalog write through the store,
// makes the next start import, and the catalog then holds the files'
// content.
func TestImportSkippedOnlyWhenUnchanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(filepath.Join(dir, "groups"), 0o755)
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("profiles/p.yaml", "id: p\nboot:\n  kernel: /k\n")
	write("groups/a.yaml", "id: a\nprofile: p\nselector:\n  mac: \"52:54:00:00:00:0a\"\nmetadata:\n  v: one\n")
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	steps := []struct {
		name    string
		change  func()
		skipped bool
		// groups the catalog holds after the start: id → metadata v
		groups map[string]string
	}{
		{"first start", func() {}, false, map[string]string{"a": "one"}},
		{"restart", func() {}, true, map[string]string{"a": "one"}},
		{"file changed", func() {
			write("groups/a.yaml", "id: a\nprofile: p\nselector:\n  mac: \"52:54:00:00:00:0a\"\nmetadata:\n  v: two\n")
		}, false, map[string]string{"a": "two"}},
		{"restart after change", func() {}, true, map[string]string{"a": "two"}},
		{"same bytes rewritten", func() {
			write("groups/a.yaml", "id: a\nprofile: p\nselector:\n  mac: \"52:54:00:00:00:0a\"\nmetadata:\n  v: two\n")
		}, true, map[string]string{"a": "two"}},
		{"catalog written through the store", func() {
			if _, err := st.UpdateCatalog(ctx, func(c store.CatalogTx) error { return c.Delete(matchbox.KindGroup, "a", 0) }); err != nil {
				t.Fatal(err)
			}
		}, false, map[string]string{"a": "two"}},
		{"file added", func() {
			write("groups/b.yaml", "id: b\nprofile: p\nselector:\n  mac: \"52:54:00:00:00:0b\"\nmetadata:\n  v: three\n")
		}, false, map[string]string{"a": "two", "b": "three"}},
		{"file removed", func() { os.Remove(filepath.Join(dir, "groups", "b.yaml")) }, false, map[string]string{"a": "two"}},
		{"hidden file added", func() { write("groups/.c.yaml", "not read") }, true, map[string]string{"a": "two"}},
	}
	for _, s := range steps {
		s.change()
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		if err := importDataDir(ctx, log, st, dir, "test", pruneGuard{allow: true}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if skipped := strings.Contains(logs.String(), "import skipped"); skipped != s.skipped {
			t.Errorf("%s: import skipped %v, want %v; log:\n%s", s.name, skipped, s.skipped, logs.String())
		}
		got := map[string]string{}
		for _, g := range st.Snapshot().Groups() {
			got[g.ID] = fmt.Sprint(g.Metadata["v"])
		}
		if fmt.Sprint(got) != fmt.Sprint(s.groups) {
			t.Errorf("%s: catalog groups %v, want %v", s.name, got, s.groups)
		}
	}
}
