package tftp

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileCacheShared: transfers of one file share one copy of its
// contents; a file rewritten (new size or modification time) is read
// again; files over maxCachedFile, or past maxCachedTotal, are left to
// the caller (nil).
func TestFileCacheShared(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mtime time.Time) (*os.File, os.FileInfo) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return f, fi
	}
	var c fileCache
	t0 := time.Unix(1_800_000_000, 0)
	boot := bytes.Repeat([]byte("undionly"), 9000)
	f, fi := write("undionly.kpxe", boot, t0)
	a, err := c.contents("undionly.kpxe", f, fi)
	if err != nil || !bytes.Equal(a, boot) {
		t.Fatalf("first read: %d bytes, %v; want the file's %d", len(a), err, len(boot))
	}
	f2, fi2 := write("undionly.kpxe", boot, t0) // same size and time: the cached copy
	b, err := c.contents("undionly.kpxe", f2, fi2)
	if err != nil || &a[0] != &b[0] {
		t.Fatalf("second transfer of an unchanged file got another copy (%v)", err)
	}
	changed := bytes.Repeat([]byte("UNDIONLY"), 9000) // same size, new time
	f3, fi3 := write("undionly.kpxe", changed, t0.Add(time.Second))
	if got, err := c.contents("undionly.kpxe", f3, fi3); err != nil || !bytes.Equal(got, changed) {
		t.Fatalf("a rewritten file was served from the old copy (%v)", err)
	}
	if c.total != int64(len(changed)) {
		t.Fatalf("cache holds %d bytes for one file of %d", c.total, len(changed))
	}
	big, bigFI := write("big.efi", make([]byte, maxCachedFile+1), t0)
	if got, err := c.contents("big.efi", big, bigFI); got != nil || err != nil {
		t.Fatalf("a file over maxCachedFile was cached (%d bytes, %v)", len(got), err)
	}
	// Fill up to the total: the file that does not fit is not cached.
	n := 0
	for c.total+maxCachedFile <= maxCachedTotal {
		f, fi := write(filepath.Base(t.Name())+string(rune('a'+n)), make([]byte, maxCachedFile), t0)
		if got, err := c.contents(fi.Name(), f, fi); err != nil || got == nil {
			t.Fatalf("file %d of %d bytes not cached under the total (%v)", n, maxCachedFile, err)
		}
		n++
	}
	over, overFI := write("over", make([]byte, maxCachedFile), t0)
	if got, err := c.contents("over", over, overFI); got != nil || err != nil {
		t.Fatalf("a file past maxCachedTotal was cached (%d bytes, %v); total %d", len(got), err, c.total)
	}
	if c.total > maxCachedTotal {
		t.Fatalf("cache holds %d bytes, over its bound %d", c.total, maxCachedTotal)
	}
}
