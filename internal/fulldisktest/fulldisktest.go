// Package fulldisktest gives tests a small tmpfs of their own and fills
// it, to see how code behaves on a full disk. Mounting needs root: without
// it, or without mount(8), the test is skipped (internal/needs).
package fulldisktest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"matchbox/internal/needs"
)

// Mount mounts a tmpfs of size (mount's size= option: "2m", "4m") at a new
// directory, unmounted when the test ends, and returns the directory.
func Mount(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root (mounts a tmpfs to fill)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		needs.Skipf(t, "cannot mount a tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes the file dir/fill until the filesystem holding dir has no
// space left, checks that none is, and returns the file's path: removing
// it gives the space back.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for size := len(buf); size > 0; {
		if _, err := f.Write(buf[:size]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			size /= 2 // the last bytes
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free != 0 {
		t.Fatalf("%s: %d bytes still free after filling", dir, free)
	}
	return path
}
