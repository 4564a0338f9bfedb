package datadir

import (
	"os"
	"path/filepath"
	"testing"

	"matchbox/matchbox"

	"github.com/google/go-cmp/cmp"
)

// TestReadFilesAsReadFS: a data directory read from its files' contents
// (as a bundle holds them) gives what reading it from disk gives, with the
// same files ignored.
func TestReadFilesAsReadFS(t *testing.T) {
	files := map[string]string{
		"profiles/etcd.yaml":     "id: etcd\nboot:\n  kernel: /k\n",
		"profiles/notes.txt":     "skipped with a warning",
		"profiles/.hidden.yaml":  "id: hidden\n",
		"profiles/etcd.yaml~":    "id: backup\n",
		"groups/node1.json":      `{"id": "node1", "profile": "etcd", "selector": {"mac": "52:54:00:00:00:01"}}`,
		"ignition/etcd.yaml":     "variant: flatcar\nversion: 1.0.0\n",
		"generic/hello.txt":      "hello {{.mac}}\n",
		"elsewhere/ignored.yaml": "id: nope\n",
	}
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fromDisk, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromFiles, err := ReadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fromDisk, fromFiles); diff != "" {
		t.Fatalf("ReadFiles differs from Read (-Read +ReadFiles):\n%s", diff)
	}
	if len(fromFiles.Profiles) != 1 || len(fromFiles.Groups) != 1 || len(fromFiles.Templates) != 2 || len(fromFiles.Warnings) != 1 {
		t.Fatalf("content: %+v", fromFiles)
	}
}

// TestFolders: every kind has its folder and back.
func TestFolders(t *testing.T) {
	want := []string{"profiles", "groups", "ignition", "generic"}
	if diff := cmp.Diff(want, Folders()); diff != "" {
		t.Fatalf("Folders() (-want +got):\n%s", diff)
	}
	for _, k := range matchbox.Kinds() {
		if got, ok := KindOf(Folder(k)); !ok || got != k {
			t.Errorf("KindOf(Folder(%s)) = %s, %v", k, got, ok)
		}
	}
	if _, ok := KindOf("assets"); ok {
		t.Error("assets is not a catalog folder")
	}
}
