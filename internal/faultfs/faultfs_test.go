package faultfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"matchbox/internal/needs"
)

func mountTest(t *testing.T) (*FS, string, string) {
	t.Helper()
	if err := Available(); err != nil {
		needs.Skip(t, err.Error())
	}
	backing, dir := t.TempDir(), t.TempDir()
	f, err := Mount(backing, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f, backing, dir
}

// Writes pass through, then fail with the errno asked for through a file
// opened before and on new opens, while reads still pass; then pass again.
func TestFailWritesOnDemand(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EROFS, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			f, backing, dir := mountTest(t)
			path := filepath.Join(dir, "db")
			open, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			if _, err := open.WriteAt([]byte("before"), 0); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(backing, "db")); err != nil || string(b) != "before" {
				t.Fatalf("backing file after a write through the mount: %q %v", b, err)
			}

			f.Fail(errno)
			if _, err := open.WriteAt([]byte("during"), 0); !errors.Is(err, errno) {
				t.Fatalf("write through a file opened before: %v, want %v", err, errno)
			}
			if err := open.Sync(); !errors.Is(err, errno) {
				t.Fatalf("fsync: %v, want %v", err, errno)
			}
			if err := open.Truncate(0); !errors.Is(err, errno) {
				t.Fatalf("truncate: %v, want %v", err, errno)
			}
			if _, err := os.OpenFile(path, os.O_RDWR, 0); !errors.Is(err, errno) {
				t.Fatalf("open for writing: %v, want %v", err, errno)
			}
			if _, err := os.Create(filepath.Join(dir, "new")); !errors.Is(err, errno) {
				t.Fatalf("create: %v, want %v", err, errno)
			}
			if err := os.Remove(path); !errors.Is(err, errno) {
				t.Fatalf("unlink: %v, want %v", err, errno)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != "before" {
				t.Fatalf("read while writes fail: %q %v", b, err)
			}

			f.Fail(0)
			if _, err := open.WriteAt([]byte("after!"), 0); err != nil {
				t.Fatalf("write once writes pass again: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(backing, "db")); err != nil || string(b) != "after!" {
				t.Fatalf("backing file after writes pass again: %q %v", b, err)
			}
		})
	}
}
